"""Misuse from the shell: every case exits 2 with one line on stderr and no traceback, and
changes nothing: the whole working folder (every name, every byte) is as it was.

Each row is what a user might type (a bad flag, a missing or wrong file, a bad name);
the expected fragment is what the one line must say so that the user can fix it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from conftest import assert_one_line_error, tlkit

# (id, argv, fragment expected in the error line). "{tmp}" is the test's folder, which holds:
# shapes/ (a tiny image folder), notes.txt (a text file), fake.jpg (text named .jpg),
# empty/ (an empty folder), run_as_file (a plain file), feats.parquet (features of shapes/ at 32x32).
CASES = [
    ("batch-size-0", ["finetune", "--data", "{tmp}/shapes", "--batch-size", "0"], "--batch-size"),
    ("lr-nan", ["finetune", "--data", "{tmp}/shapes", "--lr", "nan"], "--lr"),
    ("lr-negative", ["finetune", "--data", "{tmp}/shapes", "--lr", "-1"], "--lr"),
    ("lr-inf", ["finetune", "--data", "{tmp}/shapes", "--finetune-lr", "inf"], "--finetune-lr"),
    ("input-size-0", ["finetune", "--data", "{tmp}/shapes", "--input-size", "0", "0"], "--input-size"),
    ("input-size-text", ["finetune", "--data", "{tmp}/shapes", "--input-size", "big", "64"], "--input-size"),
    ("epochs-negative", ["finetune", "--data", "{tmp}/shapes", "--epochs", "-1"], "--epochs"),
    ("val-split-1.5", ["finetune", "--data", "{tmp}/shapes", "--val-split", "1.5"], "--val-split"),
    ("dropout-1", ["finetune", "--data", "{tmp}/shapes", "--dropout", "1"], "--dropout"),
    ("no-data", ["finetune"], "--data"),
    ("unknown-optimizer", ["finetune", "--data", "{tmp}/shapes", "--optimizer", "rmsprop"], "rmsprop"),
    ("unknown-command", ["fine-tune"], "fine-tune"),
    ("unknown-flag", ["finetune", "--data", "{tmp}/shapes", "--epoch", "3", "--frobnicate"], "--frobnicate"),
    ("unknown-base", ["finetune", "--data", "{tmp}/shapes", "--base", "resnet5O"], "resnet5O"),
    ("unfreeze-word", ["finetune", "--data", "{tmp}/shapes", "--unfreeze", "some"], "--unfreeze"),
    (
        "missing-data-folder",
        ["finetune", "--data", "{tmp}/typo", "--base", "cifar_example", "--weights", "none"],
        "typo",
    ),
    (
        "runs-dir-is-a-file",
        [
            "finetune",
            "--data",
            "{tmp}/shapes",
            "--base",
            "cifar_example",
            "--weights",
            "none",
            "--runs-dir",
            "{tmp}/run_as_file",
        ],
        "run_as_file",
    ),
    (
        "runs-dir-in-proc",
        [
            "finetune",
            "--data",
            "{tmp}/shapes",
            "--base",
            "cifar_example",
            "--weights",
            "none",
            "--runs-dir",
            "/proc/tlkit-no-such/x",
        ],
        "/proc/tlkit-no-such",
    ),
    (
        "no-epochs",
        [
            "finetune",
            "--data",
            "{tmp}/shapes",
            "--base",
            "cifar_example",
            "--weights",
            "none",
            "--epochs",
            "0",
            "--finetune-epochs",
            "0",
        ],
        "epoch",
    ),
    ("name-dotdot", ["finetune", "--data", "{tmp}/shapes", "--name", "../x"], "../x"),
    (
        "workers-missing-data",
        ["finetune", "--data", "{tmp}/typo", "--base", "cifar_example", "--weights", "none", "--workers", "2"],
        "typo",
    ),
    ("workers-one", ["finetune", "--data", "{tmp}/shapes", "--workers", "1"], "--workers"),
    (
        "workers-mirrored",
        ["finetune", "--data", "{tmp}/shapes", "--workers", "2", "--distribute", "mirrored"],
        "mirrored",
    ),
    ("check-sample-0", ["finetune", "--data", "{tmp}/shapes", "--check-sample", "0"], "--check-sample"),
    ("inspect-unknown", ["inspect", "vgg61"], "vgg61"),
    ("models-unknown-family", ["models", "--family", "transformers"], "transformers"),
    ("weights-path-unknown", ["weights", "path", "resnet5O"], "resnet5O"),
    ("weights-import-missing", ["weights", "import", "{tmp}/nothere.h5"], "nothere.h5"),
    ("predict-top-0", ["predict", "--top", "0", "{tmp}/fake.jpg"], "--top"),
    ("predict-not-an-image", ["predict", "--base", "efficientnet_lite0", "{tmp}/fake.jpg"], "fake.jpg"),
    ("predict-missing", ["predict", "--base", "efficientnet_lite0", "{tmp}/nothere.jpg"], "nothere.jpg"),
    ("check-data-missing", ["check-data", "{tmp}/typo"], "typo"),
    ("check-data-empty", ["check-data", "{tmp}/empty"], "empty"),
    ("evaluate-missing-run", ["evaluate", "{tmp}/runs/none"], "none"),
    ("export-missing-run", ["export", "{tmp}/runs/none", "--out", "{tmp}/sm"], "none"),
    (
        "dense-scales-text",
        ["dense-eval", "--base", "efficientnet_lite0", "--image", "{tmp}/fake.jpg", "--scales", "big"],
        "--scales",
    ),
    (
        "dense-missing-image",
        ["dense-eval", "--base", "efficientnet_lite0", "--image", "{tmp}/nothere.jpg"],
        "nothere.jpg",
    ),
    (
        "extract-bad-extension",
        [
            "extract",
            "--base",
            "cifar_example",
            "--weights",
            "none",
            "--layer",
            "penultimate",
            "--data",
            "{tmp}/shapes",
            "--out",
            "{tmp}/f.txt",
        ],
        "f.txt",
    ),
    (
        "extract-chunk-0",
        [
            "extract",
            "--layer",
            "penultimate",
            "--data",
            "{tmp}/shapes",
            "--out",
            "{tmp}/f.parquet",
            "--chunk-rows",
            "0",
        ],
        "--chunk-rows",
    ),
    (
        "extract-resume-other-size",  # it once deleted feats.parquet, leaving only feats.parquet.parts/
        [
            "extract",
            *("--base", "cifar_example", "--weights", "none", "--layer", "penultimate"),
            *("--data", "{tmp}/shapes", "--out", "{tmp}/feats.parquet", "--resume", "--input-size", "48", "48"),
        ],
        "input_size: file has [32, 32], this run asks [48, 48]",
    ),
    (
        "extract-layer-twice",
        [
            "extract",
            *("--base", "cifar_example", "--weights", "none", "--layer", "penultimate", "--layer", "penultimate"),
            *("--data", "{tmp}/shapes", "--out", "{tmp}/twice.parquet"),
        ],
        "--layer penultimate is given twice",
    ),
    (
        "extract-two-names-one-layer",
        [
            "extract",
            *("--base", "efficientnet_lite0", "--weights", "none", "--layer", "avg_pool", "--layer", "penultimate"),
            *("--data", "{tmp}/shapes", "--out", "{tmp}/twice.parquet"),
        ],
        "--layer avg_pool and --layer penultimate are the same layer (avg_pool)",
    ),
    ("probe-missing", ["probe", "{tmp}/nothere.parquet", "--out", "{tmp}/p"], "nothere.parquet"),
    ("probe-not-features", ["probe", "{tmp}/notes.txt", "--out", "{tmp}/p"], "notes.txt"),
    ("advise-missing", ["advise", "--data", "{tmp}/typo"], "typo"),
]


def snapshot(root: Path) -> dict[str, str]:
    """Every folder and file under ``root``, hidden ones included: relative path -> SHA-256 of the
    bytes ("dir" for a folder, the target for a link)."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_symlink():
            out[rel] = f"link -> {p.readlink()}"
        else:
            out[rel] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    from conftest import make_shapes_folder

    tmp = tmp_path_factory.mktemp("misuse")
    make_shapes_folder(tmp / "shapes", n=4)
    (tmp / "notes.txt").write_text("my notes\n")
    (tmp / "fake.jpg").write_text("this is not a JPEG\n")
    (tmp / "empty").mkdir()
    (tmp / "run_as_file").write_text("a file, not a folder\n")
    res = tlkit(
        "extract",
        *("--base", "cifar_example", "--weights", "none", "--layer", "penultimate"),
        *("--data", tmp / "shapes", "--out", tmp / "feats.parquet"),
        cwd=tmp,
        timeout=180,
    )
    assert res.returncode == 0 and (tmp / "feats.parquet").is_file(), res.stderr[-2000:]
    return tmp


@pytest.fixture(autouse=True)
def folder_unchanged(request):
    """Every case that uses the working folder leaves it byte-identical: a refusal changes nothing."""
    if "workdir" not in request.fixturenames:
        yield
        return
    root = request.getfixturevalue("workdir")
    before = snapshot(root)
    yield
    after = snapshot(root)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert after == before, f"the refused command changed {changed}"


def test_at_least_25_cases():
    assert len(CASES) >= 25 and len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("argv,fragment", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_misuse_is_one_line_exit_2(workdir: Path, argv: list[str], fragment: str):
    result = tlkit(*[a.replace("{tmp}", str(workdir)) for a in argv], cwd=workdir, timeout=120)
    line = assert_one_line_error(result)
    assert fragment in line, line
    assert line.startswith("tlkit"), line
    # The folder is checked byte for byte by folder_unchanged, after this test.
