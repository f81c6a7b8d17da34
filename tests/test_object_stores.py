"""The loopback object-store servers answer through the same clients a real bucket uses."""

import pytest

from tlkit.errors import ConfigError, NotFoundError
from tlkit.storage.remote import filesystem, is_remote, join, local_path, scheme_of, storage_error


def test_schemes_and_local_paths():
    assert [scheme_of(p) for p in ("gs://b/x", "S3://b", "file:///tmp/a", "/tmp/a", "C:\\x")] == [
        "gs",
        "s3",
        "file",
        "",
        "",
    ]
    assert is_remote("gs://b/x") and is_remote("s3://b") and not is_remote("file:///a") and not is_remote("a/b")
    assert local_path("file:///tmp/a") == "/tmp/a" and local_path("rel/x") == "rel/x"
    assert join("gs://b/", "runs", "r1/") == "gs://b/runs/r1"
    with pytest.raises(ConfigError):
        local_path("s3://b/x")


@pytest.mark.parametrize("scheme", ["gs", "s3"])
def test_write_read_list_and_a_missing_bucket(object_stores, scheme):
    bucket = object_stores.make_bucket(f"{scheme}://tlkit-rw")
    fs = filesystem(bucket)
    fs.pipe_file(f"{bucket}/a/b.txt", b"hello")
    assert fs.cat_file(f"{bucket}/a/b.txt") == b"hello"
    assert [p.rsplit("/", 1)[1] for p in fs.find(f"{bucket}/a")] == ["b.txt"]
    with pytest.raises(FileNotFoundError) as info:
        fs.cat_file(f"{scheme}://no-such-bucket-zz/x")
    err = storage_error(f"{scheme}://no-such-bucket-zz/x", info.value)
    assert isinstance(err, NotFoundError) and "no-such-bucket-zz" in str(err) and "\n" not in str(err)
