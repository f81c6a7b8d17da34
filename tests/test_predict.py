"""``tlkit predict`` with the embedded default: real ImageNet weights, no network, the
photos that ship with scikit-image, every accepted format, per-file errors."""

import json
import socket

import numpy as np
import pytest
import skimage.data
from PIL import Image

from tlkit.cli import main as cli
from tlkit.imagenet import class_names, classes, decode_predictions, synsets

CATS = set(range(281, 286))  # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE = {967, 968, 504}  # espresso, cup, coffee mug


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    d = tmp_path_factory.mktemp("photos")
    cat = Image.fromarray(skimage.data.chelsea())
    files = {
        "cat.jpg": cat,
        "cat.png": cat,
        "cat_gray.png": cat.convert("L"),
        "cat_rgba.png": cat.convert("RGBA"),
        "cat.bmp": cat,
        "cat.gif": cat,
        "coffee.jpg": Image.fromarray(skimage.data.coffee()),
    }
    for name, im in files.items():
        im.save(d / name)
    (d / "broken.jpg").write_bytes((d / "cat.jpg").read_bytes()[:2000])  # truncated JPEG
    (d / "notes.png").write_text("not an image")
    return d


@pytest.fixture
def offline(monkeypatch, tmp_path_factory):
    """No network at all, and the session's private Keras home (shared converted cache)."""
    home = tmp_path_factory.getbasetemp() / "keras_home_shared"
    home.mkdir(exist_ok=True)
    monkeypatch.setenv("KERAS_HOME", str(home))

    def refuse(*args, **kwargs):
        raise OSError("network disabled by the test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_predict_all_formats_offline(photos, offline, capsys):
    names = [
        "cat.jpg",
        "cat.png",
        "cat_gray.png",
        "cat_rgba.png",
        "cat.bmp",
        "cat.gif",
        "broken.jpg",
        "coffee.jpg",
        "notes.png",
        "missing.jpg",
    ]
    rc = cli.main(["predict", *[str(photos / n) for n in names], "--json", "--top", "5"])
    out, err = capsys.readouterr()
    assert rc == 2  # some files could not be read: an input error (1 is for bugs) ...
    data = json.loads(out)
    got = {r["image"].rsplit("/", 1)[-1]: r["predictions"] for r in data["results"]}
    assert list(got) == [n for n in names if n not in ("broken.jpg", "notes.png", "missing.jpg")]
    for name, preds in got.items():  # ... and the others are answered
        assert len(preds) == 5 and [p["rank"] for p in preds] == [1, 2, 3, 4, 5]
        probs = [p["prob"] for p in preds]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0001
        expected = COFFEE if name.startswith("coffee") else CATS
        assert preds[0]["index"] in expected, (name, preds[:3])
        assert preds[0]["name"] == class_names()[preds[0]["index"]]
    errors = {e["image"].rsplit("/", 1)[-1]: e["reason"] for e in data["errors"]}
    assert errors == {"broken.jpg": "truncated", "notes.png": "not_an_image", "missing.jpg": "missing"}
    for name in errors:
        assert str(photos / name) in err
    lines = err.strip().splitlines()  # one line per unreadable file, in the CLI's error format
    assert len(lines) == 3 and all(ln.startswith("tlkit predict: error: ") for ln in lines), err


def test_predict_table(photos, offline, capsys):
    rc = cli.main(["predict", str(photos / "cat.jpg"), str(photos / "coffee.jpg"), "--top", "3"])
    out = capsys.readouterr().out
    assert rc == 0
    lines = out.strip().splitlines()
    assert lines[0].split() == ["image", "rank", "class", "name", "prob"]
    assert len(lines) == 1 + 2 * 3
    first_cat = lines[1].split()
    assert first_cat[0].endswith("cat.jpg") and first_cat[1] == "1" and int(first_cat[2]) in CATS
    assert any("espresso" in line for line in lines)


def test_predict_rejects_bad_arguments(photos, capsys):
    # Refused by argparse since flags are typed (tlkit.cli.commands._argtypes): a usage error, exit 2.
    with pytest.raises(SystemExit) as info:
        cli.main(["predict", str(photos / "cat.jpg"), "--top", "0"])
    assert info.value.code == 2
    assert "argument --top: must be >= 1, got 0" in capsys.readouterr().err
    assert cli.main(["predict", "--base", "lenet5", str(photos / "cat.jpg")]) == 2
    assert "no ImageNet classifier" in capsys.readouterr().err


def test_only_bad_files_exit_2_without_building_a_model(photos, capsys):
    assert cli.main(["predict", str(photos / "notes.png")]) == 2
    assert "not_an_image" in capsys.readouterr().err


def test_max_pixels_refuses_from_the_header(photos, capsys):
    # chelsea is 451x300 = 135,300 pixels: over a 100,000 limit, refused before decoding.
    assert cli.main(["predict", str(photos / "cat.png"), "--max-pixels", "100000"]) == 2
    err = capsys.readouterr().err
    assert "too_large" in err and "451x300" in err and "100,000" in err


# --- class names: shipped, never downloaded ---------------------------------------------------


def test_class_names_are_packaged():
    assert len(class_names()) == 1000 and len(set(synsets())) == 1000
    assert classes()[281].synset == "n02123045" and class_names()[281] == "tabby"
    assert class_names()[967] == "espresso"


def test_decode_predictions():
    p = np.zeros(1000)
    p[[3, 281, 967]] = [0.1, 0.6, 0.3]
    top = decode_predictions(p, top=2)
    assert [(t.index, t.name) for t in top] == [(281, "tabby"), (967, "espresso")]
    assert top[0] == (281, "n02123045", "tabby", pytest.approx(0.6))
    batch = decode_predictions(np.stack([p, p[::-1]]), top=3)
    assert len(batch) == 2 and batch[1][0].index == 999 - 281
    assert len(decode_predictions(p, top=5000)) == 1000
    with pytest.raises(ValueError, match="shape"):
        decode_predictions(np.zeros(10))
