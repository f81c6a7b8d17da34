"""Publishing an extraction's output to a store (:mod:`tlkit.features.remote_out`), against the loopback servers.

The extraction itself is stood in for by files written into the staging folder (the CLI tests in
tests/cli/test_object_store_outputs.py run the real one): what is checked here is what the store
holds after a finished, a refused and an interrupted run.
"""

from __future__ import annotations

import pytest

from tlkit.errors import AlreadyExistsError, ConfigError
from tlkit.features.remote_out import staged_extract_out
from tlkit.storage.outputs import bucket_of, lock_url
from tlkit.storage.remote import filesystem


def _names(url: str) -> list[str]:
    fs = filesystem(url)
    fs.invalidate_cache()
    prefix = url.split("://", 1)[1].rstrip("/") + "/"
    return sorted(p.split("://")[-1][len(prefix) :] for p in fs.find(url))


def test_lock_and_bucket_names():
    assert bucket_of("gs://b/x/y.parquet") == "gs://b"
    assert lock_url("s3://b/x/f.parquet", inside=False) == "s3://b/x/.f.parquet.tlkit.lock"
    assert lock_url("s3://b/models/m/", inside=True) == "s3://b/models/m/.tlkit.lock"


@pytest.mark.parametrize("scheme", ["gs", "s3"])
def test_force_replaces_the_file_once_complete_and_an_interrupted_run_publishes_nothing(object_stores, scheme):
    bucket = object_stores.make_bucket(f"{scheme}://wte-publish")
    url = f"{bucket}/plain/f.parquet"
    fs = filesystem(url)
    fs.pipe_file(url, b"old")
    fs.pipe_file(url + ".skipped.csv", b"path\nold.png\n")
    with (
        pytest.raises(AlreadyExistsError, match="pass --resume"),
        staged_extract_out(url, beam=False, resume=False, force=False),
    ):
        pass
    with pytest.raises(KeyboardInterrupt), staged_extract_out(url, beam=False, resume=False, force=True) as local:
        local.write_bytes(b"half")
        raise KeyboardInterrupt
    assert fs.cat_file(url) == b"old" and _names(f"{bucket}/plain") == ["f.parquet", "f.parquet.skipped.csv"]
    with staged_extract_out(url, beam=False, resume=True, force=False) as local:
        assert local.read_bytes() == b"old"  # --resume starts from the finished file
    with staged_extract_out(url, beam=False, resume=False, force=True) as local:
        assert not local.exists()  # --force: not downloaded
        local.write_bytes(b"new")  # no skipped files this time: the old list goes
    assert fs.cat_file(url) == b"new" and _names(f"{bucket}/plain") == ["f.parquet"]


def test_beam_shards_replace_the_old_set_only_with_force(object_stores):
    bucket = object_stores.make_bucket("gs://wte-shards")
    url = f"{bucket}/b/f.parquet"
    fs = filesystem(url)
    for i in range(3):
        fs.pipe_file(f"{bucket}/b/f-{i:05d}-of-00003.parquet", b"old")
    fs.pipe_file(f"{bucket}/b/other.parquet", b"keep")
    with (
        pytest.raises(ConfigError, match="pass --force"),
        staged_extract_out(url, beam=True, resume=False, force=False),
    ):
        pass
    with staged_extract_out(url, beam=True, resume=False, force=True) as local:
        for i in range(2):
            local.with_name(f"f-{i:05d}-of-00002.parquet").write_bytes(b"new")
        local.with_name("f.parquet.skipped.csv").write_text("path\nbad.png\n")
    assert _names(f"{bucket}/b") == [
        "f-00000-of-00002.parquet",
        "f-00001-of-00002.parquet",
        "f.parquet.skipped.csv",
        "other.parquet",
    ]
    assert fs.cat_file(f"{bucket}/b/f-00001-of-00002.parquet") == b"new"


@pytest.mark.parametrize("scheme", ["gs", "s3"])
def test_export_versions_count_up_on_the_store_and_a_refused_export_uploads_nothing(object_stores, scheme):
    """The export itself is stood in for by files in the staging folder (the CLI test exports for real)."""
    from tlkit.export.remote_out import remote_versions, staged_export

    url = f"{object_stores.make_bucket(f'{scheme}://wte-versions')}/models/m"
    assert remote_versions(url) == []
    for want in (1, 2):
        with staged_export(url, None) as (local, n):
            assert n == want
            (local / str(n) / "variables").mkdir(parents=True)
            (local / str(n) / "variables" / "v.data").write_bytes(b"w")
            (local / str(n) / "saved_model.pb").write_bytes(b"pb")
    assert remote_versions(url) == [1, 2]
    with staged_export(url, None) as (local, n):  # refused (verification, --strict): no saved_model.pb staged
        assert n == 3
    assert remote_versions(url) == [1, 2]
    with pytest.raises(AlreadyExistsError, match="never overwritten"), staged_export(url, 2):
        pass
    assert _names(url) == ["1/saved_model.pb", "1/variables/v.data", "2/saved_model.pb", "2/variables/v.data"]
