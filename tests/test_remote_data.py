"""``--data gs://...`` / ``s3://...``: a bucket folder or manifest reads as its local copy does, against the
loopback GCS emulator and S3 server (tests/object_stores.py), through the clients a real bucket uses."""

import importlib.util
import io
import json
from pathlib import Path

import numpy as np
import pytest

from tlkit.data import pipeline as tldata
from tlkit.data import preflight
from tlkit.errors import DataError, NotFoundError, TlkitError

# The CLI tests' shapes maker (tests/cli/conftest.py), loaded by path: "conftest" here is tests/conftest.py.
_spec = importlib.util.spec_from_file_location("cli_conftest", Path(__file__).parent / "cli" / "conftest.py")
_cli = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_cli)
make_shapes_folder = _cli.make_shapes_folder


def _rel(items, root: str) -> list[tuple[str, str, str]]:
    return [(p[len(root) :].lstrip("/"), lab, s) for p, lab, s in zip(items["path"], items["label"], items["split"])]


@pytest.fixture(scope="module")
def photos(tmp_path_factory, object_stores):
    """A local shapes folder (with a hidden file, a note and a loose file) and its copy on both stores."""
    local = make_shapes_folder(tmp_path_factory.mktemp("remote-data") / "shapes", n=5)
    (local / "bright" / "notes.txt").write_text("not an image")
    (local / "dark" / ".DS_Store").write_bytes(b"mac")
    (local / "README").write_text("loose")
    urls = {}
    for scheme in ("gs", "s3"):
        bucket = object_stores.make_bucket(f"{scheme}://a-remote-data")
        urls[scheme] = object_stores.upload(local, f"{bucket}/shapes")
    return local, urls


@pytest.mark.parametrize("scheme", ["gs", "s3"])
def test_a_bucket_folder_lists_splits_and_ignores_as_its_local_copy(photos, scheme):
    local, urls = photos
    here, there = tldata.resolve(str(local)), tldata.resolve(urls[scheme] + "/")
    assert there.spec == urls[scheme] + "/" and there.root == urls[scheme]  # as given, not a mangled path
    assert there.classes == here.classes == ["bright", "dark", "stripes"]
    assert _rel(there.items, urls[scheme]) == _rel(here.items, str(local))  # same files, labels, seeded split
    assert sorted((i["path"][len(urls[scheme]) + 1 :], i["why"][:12]) for i in there.ignored) == [
        ("README", "not inside a"),
        ("bright/notes.txt", "extension no"),
    ]


@pytest.mark.parametrize("scheme", ["gs", "s3"])
def test_preflight_reads_each_object_once_and_remembers_it_by_version(photos, scheme, tmp_path, object_stores):
    from tlkit.storage.remote import filesystem

    local, urls = photos
    bucket = f"{scheme}://a-remote-data"
    copy = f"{bucket}/pre-{scheme}"
    object_stores.upload(local, copy)
    broken = b"\x89PNG\r\n\x1a\n garbage"
    filesystem(copy).pipe_file(f"{copy}/dark/broken.png", broken)
    (tmp_path / "broken.png").write_bytes(broken)
    local_verdict = preflight.inspect_file(str(tmp_path / "broken.png"))  # judged as the same bytes on disk
    source = tldata.resolve(copy)
    first = preflight.check(source, progress=False, cache_dir=tmp_path)
    expected = preflight.check(tldata.resolve(str(local)), progress=False, cache=False).class_counts
    assert first.class_counts == expected and first.n_reused == 0
    assert [(b.path, b.reason, b.detail) for b in first.bad_files] == [
        (f"{copy}/dark/broken.png", local_verdict["reason"], local_verdict["detail"])
    ]
    assert preflight.check(source, progress=False, cache_dir=tmp_path).n_reused == 16
    # A rewritten object has a new generation / ETag: checked again, the 15 others are not.
    png = io.BytesIO()
    from PIL import Image

    Image.new("RGB", (9, 7), (1, 2, 3)).save(png, "PNG")
    filesystem(copy).pipe_file(f"{copy}/dark/broken.png", png.getvalue())
    again = preflight.check(tldata.resolve(copy), progress=False, cache_dir=tmp_path, thorough=True)
    assert again.n_reused == 15 and not again.bad_files  # thorough: header-only JPEG results would not do
    assert again.class_counts["train"]["dark"] + again.class_counts["val"]["dark"] == 6


def test_the_pipeline_gives_the_local_copys_pixels(photos):
    from tlkit.features.stream import chunked_images

    local, urls = photos
    here, there = tldata.resolve(str(local)), tldata.resolve(urls["s3"])
    for cache in (False, "mem"):
        kw = dict(image_size=(24, 24), batch_size=4, training=False, cache=cache)
        a = list(tldata.make_dataset(here, "train", **kw))
        b = list(tldata.make_dataset(there, "train", **kw))
        assert len(a) == len(b) == 3
        for (xa, ya), (xb, yb) in zip(a, b):
            np.testing.assert_array_equal(xa.numpy(), xb.numpy())
            np.testing.assert_array_equal(ya.numpy(), yb.numpy())
        if not cache:
            plain = np.concatenate([x.numpy() for x, _ in a])
    # Training with the epoch variable (the keyed, shuffled path) sees every file once per epoch.
    ds = tldata.make_dataset(
        there, "train", image_size=(24, 24), batch_size=4, training=True, epoch=tldata.epoch_variable()
    )
    assert int(ds.cardinality()) == 3 and sum(int(y.shape[0]) for _, y in ds) == 12
    # extract's stream (path kept with each image) and the plain image list read the same pixels.
    train = list(there.items[there.items["split"] == "train"]["path"])
    got = list(chunked_images(train, chunk_rows=8, batch_size=4, size=(24, 24), channels=3))
    assert [int(c[0]) for _, _, c in got] == [0, 0, 1] and [p.decode() for _, ps, _ in got for p in ps.numpy()] == train
    np.testing.assert_array_equal(np.concatenate([x.numpy() for x, _, _ in got]), plain)
    imgs = tldata.images_dataset(train, image_size=(24, 24), batch_size=12)
    np.testing.assert_array_equal(next(iter(imgs)).numpy(), plain)


def test_a_manifest_on_a_bucket_resolves_relative_names_against_its_folder(photos, object_stores):
    from tlkit.storage.remote import filesystem

    local, urls = photos
    other = object_stores.make_bucket("gs://a-remote-other")
    object_stores.upload(local / "stripes" / "0.png", f"{other}/far/s0.png")
    rows = "path,label,split\nbright/0.png,bright,train\n./dark/1.png,dark,train\n"
    rows += f"{other}/far/s0.png,stripes,train\n../shapes/bright/2.png,bright,val\ndark/missing.png,dark,val\n"
    csv = f"{urls['gs']}/list.csv"
    filesystem(csv).pipe_file(csv, rows.encode())
    source = tldata.resolve(csv)
    assert source.spec == csv and source.split_method == "manifest"
    assert list(source.items["path"]) == [
        f"{urls['gs']}/bright/0.png",
        f"{urls['gs']}/bright/2.png",
        f"{urls['gs']}/dark/1.png",
        f"{urls['gs']}/dark/missing.png",
        f"{other}/far/s0.png",
    ]
    report = preflight.check(source, progress=False, cache=False)
    assert [(b.path.rsplit("/", 1)[1], b.reason) for b in report.bad_files] == [("missing.png", "missing")]
    filesystem(csv).pipe_file(csv, b"path,label\n/etc/passwd,x\n")
    with pytest.raises(DataError, match="names the local file /etc/passwd"):
        tldata.resolve(csv)


@pytest.mark.parametrize("scheme", ["gs", "s3"])
def test_a_missing_bucket_or_prefix_is_one_line(object_stores, scheme, photos):
    for url in (f"{scheme}://a-no-such-bucket/photos", f"{scheme}://a-remote-data/no-such-prefix"):
        with pytest.raises(NotFoundError) as info:
            tldata.resolve(url)
        assert url in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(NotFoundError):
        tldata.resolve(f"{scheme}://a-remote-data/no-such.csv")


def test_refused_access_is_one_line(object_stores, photos):
    """moto enforces a bucket policy's Deny on GetObject (not on listing): the preflight's first read stops."""
    import boto3

    local, _ = photos
    bucket = object_stores.make_bucket("s3://a-remote-denied")
    object_stores.upload(local, f"{bucket}/shapes")
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Deny", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::a-remote-denied/*"}
        ],
    }
    boto3.client("s3", endpoint_url=object_stores.s3_endpoint).put_bucket_policy(
        Bucket="a-remote-denied", Policy=json.dumps(policy)
    )
    source = tldata.resolve(f"{bucket}/shapes")
    with pytest.raises(DataError) as info:
        preflight.check(source, progress=False, cache=False)
    assert "refused access" in str(info.value) and "a-remote-denied" in str(info.value)
    assert "\n" not in str(info.value)


def test_weights_import_from_a_bucket(object_stores, tmp_path, monkeypatch):
    from tlkit.weights import resolve as W

    home = tmp_path / "keras_home"
    monkeypatch.setenv("KERAS_HOME", str(home))
    src = W.lite0_source_path()
    bucket = object_stores.make_bucket("s3://a-remote-weights")
    url = object_stores.upload(src, f"{bucket}/dl/{src.name}")
    dest = W.import_weights(url, "efficientnet_lite0")
    assert dest == home / "tlkit" / src.name and dest.read_bytes() == src.read_bytes()
    with pytest.raises(TlkitError) as info:
        W.import_weights(f"{bucket}/dl/nothing.pth")
    assert "s3://a-remote-weights/dl/nothing.pth" in str(info.value)
