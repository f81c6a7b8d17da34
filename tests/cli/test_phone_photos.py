"""Phone photos through the installed command: sideways-stored JPEGs (EXIF orientation 1..8) are
read upright by predict, extract and the exported SavedModel; WebP and HEIC are data like JPEG;
without the ``heic`` extra, check-data names the HEIC files and the install command.

The upright reference of a tagged file is what a photo viewer shows: PIL's ``exif_transpose`` of
it, saved as PNG (lossless), so "upright" is checked pixel for pixel, not through a second JPEG
encoding.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_RUN, cli_env, tlkit
from PIL import Image, ImageOps
from skimage import data

from tlkit.data.orientation import stored_numpy

try:
    import pillow_heif  # noqa: F401

    HAVE_HEIF = True
except ImportError:
    HAVE_HEIF = False
RTOL = 1e-3  # the pixel-parity tests' tolerance on scores (tests/test_pixel_parity.py)
TURNED = {"six.jpg": 6, "eight.jpg": 8, "three.jpg": 3}


def tagged(upright: np.ndarray, value: int) -> bytes:
    """``upright`` as a camera stores it under EXIF orientation ``value``."""
    exif = Image.Exif()
    exif[0x0112] = value
    buf = io.BytesIO()
    Image.fromarray(stored_numpy(upright, value)).save(buf, "JPEG", quality=92, exif=exif.tobytes())
    return buf.getvalue()


def encode(arr: np.ndarray, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, fmt, **kw)
    return buf.getvalue()


def heic(arr: np.ndarray) -> bytes:
    pillow_heif = pytest.importorskip("pillow_heif")
    buf = io.BytesIO()
    pillow_heif.from_pillow(Image.fromarray(arr)).save(buf, quality=90)
    return buf.getvalue()


def without_pillow_heif(tmp: Path) -> dict[str, str]:
    """The environment of a user who did not install the extra: ``import pillow_heif`` fails."""
    stub = tmp / "no_heif"
    (stub / "pillow_heif").mkdir(parents=True)
    (stub / "pillow_heif" / "__init__.py").write_text("raise ImportError('pillow_heif is not installed')\n")
    env = cli_env()
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(stub), env.get("PYTHONPATH", "")) if p)
    return env


def phone_folder(root: Path) -> Path:
    """Class ``cat``: three tagged JPEGs, one plain JPEG, one WebP; class ``coffee``: two PNGs, a WebP
    and two HEIC photos."""
    cat = data.chelsea()[::4, ::4]
    coffee = data.coffee()[::4, ::4]
    (root / "cat").mkdir(parents=True)
    (root / "coffee").mkdir()
    for name, value in TURNED.items():
        (root / "cat" / name).write_bytes(tagged(cat, value))
    (root / "cat" / "plain.jpg").write_bytes(encode(cat, "JPEG"))
    (root / "cat" / "cat.webp").write_bytes(encode(cat, "WEBP", quality=90))
    for i in range(2):
        (root / "coffee" / f"{i}.png").write_bytes(encode(np.roll(coffee, 7 * i, axis=1), "PNG"))
    (root / "coffee" / "coffee.webp").write_bytes(encode(coffee, "WEBP", lossless=True))
    return root


def test_check_data_counts_turned_files_and_names_heic_without_the_extra(tmp_path):
    root = phone_folder(tmp_path / "photos")
    coffee = data.coffee()[::4, ::4]
    for name in ("IMG_0001.HEIC", "IMG_0002.heic"):
        (root / "coffee" / name).write_bytes(heic(coffee))
    env = without_pillow_heif(tmp_path)

    res = tlkit("check-data", root, cwd=tmp_path, env=env, timeout=180)
    assert res.returncode == 0, res.stderr[-2000:]
    out = res.stdout
    assert "3 file(s) turned upright by their EXIF orientation" in out, out
    assert "2 HEIC/HEIF file(s) left out" in out and 'pip install "tlkit[heic]"' in out, out
    assert "IMG_0001.HEIC" in out and "IMG_0002.heic" in out
    assert "ignored" not in out  # WebP is data now, not "ignored"
    assert "Traceback" not in res.stderr

    res = tlkit("check-data", root, "--json", cwd=tmp_path, env=env, timeout=180)
    report = json.loads(res.stdout)
    assert report["n_turned"] == 3
    assert report["formats"].get("WEBP") == 2 and report["ignored"] == []
    assert report["n_usable"] == 8 and report["n_skipped"] == 2
    assert {Path(b["path"]).name: b["reason"] for b in report["bad_files"]} == {
        "IMG_0001.HEIC": "needs_extra",
        "IMG_0002.heic": "needs_extra",
    }


def test_check_data_reads_heic_with_the_extra(tmp_path):
    root = phone_folder(tmp_path / "photos")
    (root / "coffee" / "IMG_0001.heic").write_bytes(heic(data.coffee()[::4, ::4]))
    res = tlkit("check-data", root, "--json", cwd=tmp_path, timeout=180)
    assert res.returncode == 0, res.stderr[-2000:]
    report = json.loads(res.stdout)
    assert report["n_skipped"] == 0 and report["n_usable"] == 9
    assert report["formats"].get("HEIF") == 1 and report["formats"].get("WEBP") == 2


@pytest.mark.slow
def test_webp_and_heic_train_and_webp_is_served(tmp_path):
    """A tiny finetune on WebP and HEIC files (nothing skipped), exported; the SavedModel answers a
    WebP request with the scores of the same pixels sent as PNG, and refuses HEIC by name."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    root = tmp_path / "data"
    for cls, level in (("dark", 40), ("light", 210)):
        (root / cls).mkdir(parents=True)
        for i in range(6):
            arr = np.clip(rng.normal(level, 25, (40, 48, 3)), 0, 255).astype(np.uint8)
            (root / cls / f"{i}.webp").write_bytes(encode(arr, "WEBP", quality=90))
        for i in range(2):
            arr = np.clip(rng.normal(level, 25, (40, 48, 3)), 0, 255).astype(np.uint8)
            (root / cls / f"h{i}.heic").write_bytes(heic(arr))
    run = tmp_path / "runs" / "phone"
    res = tlkit(
        "finetune",
        "--data",
        root,
        *TINY_RUN,
        "--epochs",
        "1",
        "--finetune-epochs",
        "0",
        "--runs-dir",
        tmp_path / "runs",
        "--name",
        "phone",
        cwd=tmp_path,
        timeout=400,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads((run / "data_report.json").read_text())
    assert report["n_skipped"] == 0 and report["n_usable"] == 16
    assert report["formats"] == {"WEBP": 12, "HEIF": 4}

    res = tlkit("export", run, "--out", tmp_path / "model", "--resize", "plain", cwd=tmp_path, timeout=500)
    assert res.returncode == 0, res.stderr[-3000:]
    served = tf.saved_model.load(str(tmp_path / "model" / "1")).signatures["serving_default"]
    webp = (root / "light" / "0.webp").read_bytes()
    png = encode(np.asarray(Image.open(io.BytesIO(webp)).convert("RGB")), "PNG")
    scores = served(image_bytes=tf.constant([webp, png]))["scores"].numpy()
    np.testing.assert_allclose(scores[0], scores[1], rtol=1e-5, atol=1e-7)
    with pytest.raises(tf.errors.InvalidArgumentError, match="HEIC/HEIF format, which the serving graph cannot"):
        served(image_bytes=tf.constant([(root / "light" / "h0.heic").read_bytes()]))


# --- all eight orientations through predict, extract and the SavedModel ------------------------------


@pytest.fixture()
def eight_files(tmp_path):
    """A function: orientation -> (folder, the cat stored under it as a tagged JPEG, its upright view as PNG)."""

    def make(value: int) -> tuple[Path, Path, Path]:
        blob = tagged(data.chelsea(), value)
        tagged_file, ref = tmp_path / f"o{value}.jpg", tmp_path / f"o{value}.png"
        tagged_file.write_bytes(blob)
        Image.fromarray(np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(blob))).convert("RGB"))).save(ref)
        return tmp_path, tagged_file, ref

    return make


@pytest.fixture(scope="module")
def eight(tmp_path_factory) -> dict:
    """The cat stored under each orientation (``cat/o{v}.jpg``), with its upright view as PNG
    (``ref/o{v}.png``), and the scores of every file through predict, extract and the SavedModel."""
    import tensorflow as tf

    work = tmp_path_factory.mktemp("eight")
    upright = data.chelsea()  # 300 x 451: a missed turn changes the shape, not just the pixels
    for d in ("photos/cat", "photos/ref"):
        (work / d).mkdir(parents=True)
    names = []
    for v in range(1, 9):
        blob = tagged(upright, v)
        (work / "photos" / "cat" / f"o{v}.jpg").write_bytes(blob)
        view = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(blob))).convert("RGB"))
        assert view.shape == upright.shape
        Image.fromarray(view).save(work / "photos" / "ref" / f"o{v}.png")
        names += [f"cat/o{v}.jpg", f"ref/o{v}.png"]
    # The other formats, each beside a PNG of the pixels PIL decodes from it (HEIC: with the extra).
    (work / "photos" / "fmt").mkdir()
    formats = {"webp": encode(upright, "WEBP", quality=90)}
    if HAVE_HEIF:
        formats["heic"] = heic(upright)
    for ext, blob in formats.items():
        (work / "photos" / "fmt" / f"cat.{ext}").write_bytes(blob)
        Image.open(io.BytesIO(blob)).convert("RGB").save(work / "photos" / "fmt" / f"{ext}.png")
        names += [f"fmt/cat.{ext}", f"fmt/{ext}.png"]
    files = [work / "photos" / n for n in names]
    raw = work / "raw" / "o6.png"  # the pixels as stored under tag 6, untagged: what was read before
    raw.parent.mkdir()
    Image.fromarray(stored_numpy(upright, 6)).save(raw)
    common = ("--base", "efficientnet_lite0", "--weights", "imagenet")

    res = tlkit("predict", *files, raw, *common, "--resize", "plain", "--top", "5", "--json", cwd=work, timeout=400)
    assert res.returncode == 0, res.stderr[-3000:]
    out: dict = {"predict": {}}
    for r in json.loads(res.stdout)["results"]:
        key = Path(r["image"]).parent.name + "/" + Path(r["image"]).name
        out["predict"][key] = {p["index"]: p["prob"] for p in r["predictions"]}

    feats = work / "feats.npz"
    res = tlkit(
        "extract", *common, "--layer", "classifier", "--data", work / "photos", "--val-split", "0", "--out", feats,
        cwd=work, timeout=400,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    from tlkit.features.store import load_features

    matrix, rows, _ = load_features(feats)
    out["extract"] = {
        Path(p).parent.name + "/" + Path(p).name: matrix["classifier"][i] for i, p in enumerate(rows["path"])
    }

    res = tlkit(
        "export", *common, "--resize", "plain", "--out", work / "model", "--version", "1", cwd=work, timeout=500
    )
    assert res.returncode == 0, res.stderr[-3000:]
    served = tf.saved_model.load(str(work / "model" / "1")).signatures["serving_default"]
    servable = [n for n in names if not n.endswith(".heic")]  # the serving graph refuses HEIC (tested above)
    scores = served(image_bytes=tf.constant([(work / "photos" / n).read_bytes() for n in servable]))["scores"]
    out["saved_model"] = dict(zip(servable, scores.numpy()))
    return out


def _top5(scores) -> list[int]:
    if isinstance(scores, dict):
        return sorted(scores, key=lambda k: -scores[k])[:5]
    return [int(i) for i in np.argsort(-np.asarray(scores), kind="stable")[:5]]


@pytest.mark.slow
@pytest.mark.parametrize("value", range(1, 9))
@pytest.mark.parametrize("path", ["predict", "extract", "saved_model"])
def test_each_orientation_gives_the_upright_photos_top5_and_scores(eight, path, value):
    got, want = eight[path][f"cat/o{value}.jpg"], eight[path][f"ref/o{value}.png"]
    assert _top5(got) == _top5(want), f"{path}, orientation {value}"
    ids = _top5(want)
    np.testing.assert_allclose([got[i] for i in ids], [want[i] for i in ids], rtol=RTOL)
    # And every path agrees with predict on the tagged file itself.
    pred = eight["predict"][f"cat/o{value}.jpg"]
    np.testing.assert_allclose([got[i] for i in ids], [pred[i] for i in ids], rtol=RTOL)


@pytest.mark.slow
@pytest.mark.parametrize("ext", ["webp", "heic"])
@pytest.mark.parametrize("path", ["predict", "extract", "saved_model"])
def test_each_format_gives_its_pixels_top5_and_scores(eight, path, ext):
    """WebP (and HEIC with the extra) through every path: the scores of the same pixels sent as PNG."""
    if ext == "heic" and not HAVE_HEIF:
        pytest.skip('the heic extra is not installed: pip install "tlkit[heic]"')
    if ext == "heic" and path == "saved_model":
        pytest.skip("the serving graph refuses HEIC by name (test_webp_and_heic_train_and_webp_is_served)")
    got, want = eight[path][f"fmt/cat.{ext}"], eight[path][f"fmt/{ext}.png"]
    ids = _top5(want)
    assert _top5(got) == ids
    np.testing.assert_allclose([got[i] for i in ids], [want[i] for i in ids], rtol=RTOL)


@pytest.mark.slow
def test_the_comparison_can_tell_a_sideways_photo(eight):
    """The photo read as stored (the tag ignored, as before) scores outside the tolerance, so the
    test above would see a missed or wrong turn."""
    upright, sideways = eight["predict"]["ref/o6.png"], eight["predict"]["raw/o6.png"]
    ids = _top5(upright)
    differs = [i for i in ids if i not in sideways or abs(sideways[i] - upright[i]) > RTOL * upright[i]]
    assert differs, "the sideways pixels gave the upright photo's top-5 scores"


@pytest.mark.slow
@pytest.mark.parametrize("value", [6, 7])  # a rotation and a mirrored one
def test_dense_eval_reads_the_photo_upright(eight_files, value):
    """``tlkit dense-eval`` (aspect kept: a sideways photo would give a transposed map) on a tagged
    JPEG gives the scores of its upright view."""
    work, tagged_file, ref = eight_files(value)
    got, want = (
        json.loads(
            tlkit(
                "dense-eval",
                "--base",
                "efficientnet_lite0",
                "--image",
                f,
                "--scales",
                "256",
                "--top",
                "5",
                "--json",
                cwd=work,
                timeout=300,
            ).stdout  # fmt: skip
        )
        for f in (tagged_file, ref)
    )
    assert got["image_size"] == want["image_size"] == [300, 451]
    assert got["scales"][0]["map_shape"] == want["scales"][0]["map_shape"]
    assert [p["index"] for p in got["top"]] == [p["index"] for p in want["top"]]
    np.testing.assert_allclose([p["score"] for p in got["top"]], [p["score"] for p in want["top"]], rtol=RTOL)


@pytest.mark.slow
def test_beam_extraction_reads_photos_upright(tmp_path):
    """``tlkit extract --runner beam``: each tagged JPEG gives the features of its upright view."""
    pytest.importorskip("apache_beam", reason='the beam extra is not installed: pip install "tlkit[beam]"')
    from tlkit.features.store import load_features

    upright = data.chelsea()[::3, ::3]
    root = tmp_path / "photos"
    for v in (2, 5, 6, 8):
        for d in ("cat", "ref"):
            (root / d).mkdir(parents=True, exist_ok=True)
        blob = tagged(upright, v)
        (root / "cat" / f"o{v}.jpg").write_bytes(blob)
        Image.fromarray(np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(blob))).convert("RGB"))).save(
            root / "ref" / f"o{v}.png"
        )
    (root / "raw").mkdir()
    Image.fromarray(stored_numpy(upright, 6)).save(root / "raw" / "o6.png")  # as stored, untagged
    flags = ("--base", "cifar_example", "--weights", "none", "--seed", "3", "--input-size", "32", "32")
    res = tlkit(
        "extract", *flags, "--layer", "penultimate", "--data", root, "--val-split", "0", "--out", "f.parquet",
        "--runner", "beam", cwd=tmp_path, timeout=400,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    feats, rows, _ = load_features(tmp_path / "f.parquet")
    by_name = {Path(p).parent.name + "/" + Path(p).stem: feats["penultimate"][i] for i, p in enumerate(rows["path"])}
    for v in (2, 5, 6, 8):
        np.testing.assert_allclose(by_name[f"cat/o{v}"], by_name[f"ref/o{v}"], rtol=1e-3, atol=1e-4)
    # The stored (sideways) pixels give other features: the comparison would see a missed turn.
    assert not np.allclose(by_name["raw/o6"], by_name["ref/o6"], rtol=1e-3, atol=1e-4)
