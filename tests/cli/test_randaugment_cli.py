"""``tlkit finetune --randaugment N,M`` as a user runs it: refused where it cannot work (one line, exit 2,
before TensorFlow loads), recorded in config.json, and a killed and resumed run equals the
uninterrupted one bit for bit (RandAugment's draws are a function of (seed, epoch, image))."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY_RUN, cli_env, make_shapes_folder, run_history, start_tlkit, stop, tlkit, wait_for

REFUSED = [
    (["--randaugment", "2"], "expected N,M"),
    (["--randaugment", "2,40"], "magnitude M in 0..30"),
    (["--randaugment", "2,9", "--no-augment"], "--no-augment"),
    (["--randaugment", "2,9", "--cache-features"], "--cache-features"),
]


def test_refused_in_one_line_before_tensorflow_loads(tmp_path: Path):
    data = make_shapes_folder(tmp_path / "shapes", n=2)
    code = (
        "import contextlib, io, json, sys\nfrom tlkit.cli.main import main\nout = []\n"
        f"for extra, _ in {REFUSED!r}:\n"
        "    err = io.StringIO()\n"
        "    with contextlib.redirect_stderr(err):\n"
        "        try:\n"
        f"            rc = main(['finetune', '--data', {str(data)!r}, '--weights', 'none', *extra])\n"
        "        except SystemExit as e:\n"
        "            rc = e.code\n"
        "    out.append([rc, [ln for ln in err.getvalue().splitlines() if ln.strip()]])\n"
        "print(json.dumps({'results': out, 'tf': 'tensorflow' in sys.modules}))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    got = json.loads(r.stdout.splitlines()[-1])
    assert got["tf"] is False, r.stderr[-2000:]
    for (rc, lines), (extra, fragment) in zip(got["results"], REFUSED):
        assert rc == 2 and len(lines) == 1 and fragment in lines[0], (extra, rc, lines)
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_killed_and_resumed_run_equals_the_uninterrupted_one(tmp_path: Path):
    data = make_shapes_folder(tmp_path / "shapes", n=8)  # 18 training images: 3 steps of 8, 8, 2
    tiny = [a for a in TINY_RUN if a != "--no-augment"]
    args = ("finetune", *tiny, "--data", str(data), "--epochs", "2", "--finetune-epochs", "0", "--quiet")
    args = (*args, "--randaugment", "2,9")
    run = tmp_path / "runs" / "stopped"

    def epochs_done() -> int:
        try:
            return json.loads((run / "state.json").read_text()).get("next_epoch", 0)
        except (FileNotFoundError, ValueError):
            return 0

    # The uninterrupted run and the one to kill start together: each is mostly TensorFlow's start-up.
    full = start_tlkit(*args, "--name", "full", cwd=tmp_path, env=cli_env(), log=tmp_path / "full.log")
    proc = start_tlkit(*args, "--name", "stopped", cwd=tmp_path, env=cli_env(), log=tmp_path / "0.log")
    try:
        wait_for(lambda: epochs_done() >= 1, 240, proc, every=0.02)
        assert stop(proc, signal.SIGKILL) == -9 and epochs_done() == 1
        assert full.wait(timeout=300) == 0, (tmp_path / "full.log").read_text()[-2000:]
    finally:
        for p in (full, proc):
            if p.poll() is None:
                stop(p, signal.SIGKILL)
    saved = json.loads((tmp_path / "runs" / "full" / "config.json").read_text())
    assert saved["randaugment"] == "2,9" and saved["augment"] == "crop"
    log = (tmp_path / "runs" / "full" / "train.log").read_text()
    assert "augmentation: crop, flip on, RandAugment 2,9 (N,M) for colour jitter" in log
    # Resumed without the flag: the run's own config.json brings --randaugment 2,9 back.
    r = tlkit(*args[:-2], "--name", "stopped", "--resume", cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    resumed = (run / "train.log").read_text()
    assert "resumed from" in resumed and resumed.count("RandAugment 2,9") == 2
    one, two = run_history(tmp_path / "runs" / "full"), run_history(run)
    assert [r["epoch"] for r in one] == ["0", "1"]
    assert two == one  # every loss and accuracy, to the last printed digit
