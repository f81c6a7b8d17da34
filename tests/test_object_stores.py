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


@pytest.mark.parametrize("scheme", ["gs", "s3"])
def test_a_folder_goes_up_with_its_marker_last_and_comes_back_byte_identical(object_stores, scheme, tmp_path):
    from tlkit.storage.transfer import download_tree, upload_tree

    src = tmp_path / "src"
    (src / "variables").mkdir(parents=True)
    (src / "saved_model.pb").write_bytes(b"pb")
    (src / "variables" / "v.data").write_bytes(bytes(range(256)) * 4)
    (src / "a.txt").write_text("a")
    bucket = object_stores.make_bucket(f"{scheme}://tlkit-tree")
    sent = upload_tree(src, f"{bucket}/m/1", last=["saved_model.pb"])
    assert sent[-1] == f"{bucket}/m/1/saved_model.pb" and len(sent) == 3
    got = download_tree(f"{bucket}/m/1", tmp_path / "back")
    assert sorted(p.relative_to(tmp_path / "back").as_posix() for p in got) == [
        "a.txt",
        "saved_model.pb",
        "variables/v.data",
    ]
    for p in got:
        assert p.read_bytes() == (src / p.relative_to(tmp_path / "back")).read_bytes()
