"""A run's files read back with damage named: JSON, checkpoints, history, checksums.

Every file a run writes is written atomically (:mod:`tlkit._io`), so a kill never leaves half
of one; damage comes from outside (a full disk at copy time, a sync tool, an edit). It is found
when the file is read, before any training, and reported as one line naming the file and the
fix (:class:`DamagedFileError`, exit 2), never as a traceback or as a fault of the data.

``state.json`` keeps the size and SHA-256 of the files the run wrote (:data:`CHECKSUMMED`),
refreshed each time the state is written (after the files it vouches for are complete). A file
that still matches is intact. One that differs is either a complete newer write (a kill
between the write and the state, which atomic writes allow) or damaged: it is then checked
for what it must be (a whole ``.keras`` zip, JSON, a readable history) and named if it is not.

No Keras or TensorFlow at import; :func:`load_checkpoint` imports Keras when called.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tlkit.errors import TlkitError

CONFIG, LABELS, STATE, HISTORY = "config.json", "labels.json", "state.json", "history.csv"
BEST, LAST = "best.keras", "last.keras"
CHECKSUMMED = (LAST, BEST, CONFIG, LABELS, HISTORY)  # what state.json records
KERAS_MEMBERS = ("config.json", "model.weights.h5")  # what every .keras archive holds

_RESTORE = "restore it from a copy"
FIXES = {
    STATE: f"{_RESTORE}, or start the run again with --force (state.json says where --resume continues)",
    CONFIG: f"{_RESTORE}, or start the run again with --force (config.json holds the run's settings)",
    LABELS: f"{_RESTORE} (a JSON list of the class names, in the order the run was trained on)",
    HISTORY: f"{_RESTORE}, or start the run again with --force",
}


class DamagedFileError(TlkitError, ValueError):
    """A run's file that exists but cannot be used (truncated, not what it must be, edited).

    ``problem`` is the message without its fix (what a caller that handles the damage shows)."""

    def __init__(self, problem: str, fix: str) -> None:
        self.problem, self.fix = problem, fix
        super().__init__(f"{problem}; {fix}")


def digest(path: str | os.PathLike) -> dict[str, Any]:
    """``{"size": bytes, "sha256": hex}`` of a file."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return {"size": size, "sha256": h.hexdigest()}


def digests(run: Path, previous: dict | None = None) -> dict[str, dict]:
    """Size and SHA-256 of the run's :data:`CHECKSUMMED` files that exist.

    A file whose size, inode and modification time equal ``previous``'s record is not read
    again (an atomic replace gives a new inode): a big checkpoint is hashed once per write.
    """
    out = {}
    for name in CHECKSUMMED:
        p = Path(run) / name
        try:
            st = p.stat()
        except FileNotFoundError:
            continue
        stamp = {"inode": st.st_ino, "mtime_ns": st.st_mtime_ns}
        old = (previous or {}).get(name) or {}
        if old.get("size") == st.st_size and all(old.get(k) == v for k, v in stamp.items()):
            out[name] = old
        else:
            out[name] = {**digest(p), **stamp}
    return out


def changed(path: Path, recorded: dict | None) -> str | None:
    """Why ``path`` differs from its record (``None``: it matches, or nothing was recorded)."""
    if not recorded or "sha256" not in recorded:
        return None
    now = digest(path)
    if now["size"] != recorded.get("size"):
        return f"{now['size']} bytes, the run recorded {recorded.get('size')}"
    if now["sha256"] != recorded["sha256"]:
        return f"its SHA-256 differs from the one the run recorded ({recorded.get('size')} bytes)"
    return None


def stored_state(run: Path) -> dict | None:
    """The run's ``state.json`` as it is, or ``None`` if it is absent or not a JSON object.

    For the writers and the checksum lookups, which go on without one; readers that must refuse
    a damaged state use :func:`load_json`, whose message names the file and the fix.
    """
    try:
        state = json.loads((Path(run) / STATE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def recorded(run: Path, name: str) -> dict | None:
    """The record of ``name`` in the run's ``state.json`` (``None`` if none or unreadable)."""
    state = stored_state(run)
    return (state.get("files") or {}).get(name) if state is not None else None


# -- JSON --


def load_json(path: str | os.PathLike, fix: str | None = None) -> Any:
    """A JSON file's value; a file that is not JSON raises :class:`DamagedFileError`."""
    path = Path(path)
    fix = fix or FIXES.get(path.name, f"{_RESTORE}, or delete it")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise DamagedFileError(f"{path} is damaged (not UTF-8 text)", fix) from None
    except json.JSONDecodeError as exc:
        what = "empty" if not exc.doc.strip() else f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        raise DamagedFileError(f"{path} is damaged ({what})", fix) from None


# -- checkpoints --


def checkpoint_problem(path: Path) -> str | None:
    """Why ``path`` is not a whole ``.keras`` archive (``None``: it is one). Reads the whole file."""
    try:
        if path.stat().st_size == 0:
            return "empty"
        if not zipfile.is_zipfile(path):
            return "not a .keras archive: truncated, or another kind of file"
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
            missing = [m for m in KERAS_MEMBERS if m not in z.namelist()]
    except (OSError, zipfile.BadZipFile, EOFError, ValueError) as exc:
        return f"unreadable .keras archive: {' '.join(str(exc).split())}"
    if bad is not None:
        return f"damaged: {bad} inside it fails its CRC check"
    if missing:
        return f"not a Keras model archive (no {', '.join(missing)} inside)"
    return None


def checkpoint_fix(path: Path) -> str:
    """What to do about a damaged checkpoint of a run."""
    other = path.with_name(LAST if path.name == BEST else BEST)
    if other.is_file():
        return f"{_RESTORE}, or move it away to use {other.name}"
    return f"{_RESTORE}, or train the run again with --force"


def check_checkpoint(path: Path, fix: str | None = None) -> None:
    """Raise :class:`DamagedFileError` if ``path`` is not a whole ``.keras`` archive.

    A file that matches its checksum in ``state.json`` is intact and is not opened.
    """
    path = Path(path)
    rec = recorded(path.parent, path.name)
    differs = changed(path, rec)
    if rec and differs is None:
        return
    problem = checkpoint_problem(path)
    if problem is not None:
        shown = f"{differs}: {problem}" if differs else problem
        raise DamagedFileError(f"{path} cannot be loaded ({shown})", fix or checkpoint_fix(path))


def load_checkpoint(path: Path, fix: str | None = None, **kwargs: Any) -> Any:
    """Load a run's checkpoint (tlkit's custom layers registered); damage is a :class:`DamagedFileError`."""
    path = Path(path)
    check_checkpoint(path, fix)
    from tlkit._keras_objects import register

    register()
    import keras

    try:
        return keras.saving.load_model(path, **kwargs)
    except (ValueError, OSError, KeyError, TypeError, zipfile.BadZipFile) as exc:
        text = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise DamagedFileError(f"{path} cannot be loaded ({text})", fix or checkpoint_fix(path)) from None


# -- history and resume --


BEST_FIX = f"move it away and resume again (the epochs still to train choose a new {BEST}), or restore it from a copy"


def history_epochs(path: Path) -> list[int]:
    """Epoch numbers of the complete rows of ``history.csv``."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    out = []
    for r in rows:
        try:
            if r.get("seconds"):
                out.append(int(r["epoch"]))
        except (TypeError, ValueError):
            continue
    return out


def check_history(run: Path, state: dict) -> None:
    """``history.csv`` holds every epoch ``state.json`` vouches for, or :class:`DamagedFileError`.

    A history that lost epochs cannot be rebuilt (only it records their metrics); resuming on
    would leave a history with only the later epochs, so the resume is refused.
    """
    done = int(state.get("next_epoch", 0))
    if done <= 0:
        return
    path = Path(run) / HISTORY
    fix = (
        f"{_RESTORE} and resume again, or start the run again with --force (resuming without it would "
        f"record only the epochs still to train)"
    )
    if not path.is_file():
        raise DamagedFileError(f"{path} is missing, but the run finished {done} epoch(s)", fix)
    try:
        have = set(history_epochs(path))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DamagedFileError(f"{path} cannot be read ({exc})", fix) from None
    lost = [e for e in range(done) if e not in have]
    if lost:
        shown = ", ".join(map(str, lost[:5])) + (", ..." if len(lost) > 5 else "")
        raise DamagedFileError(f"{path} lost the rows of epoch(s) {shown} of the {done} the run finished", fix)


def check_labels(run: Path) -> None:
    """``labels.json`` is as the run recorded it, or :class:`DamagedFileError` blaming it."""
    path = Path(run) / LABELS
    if not path.is_file():
        return
    value = load_json(path)
    differs = changed(path, recorded(run, LABELS))
    if differs or not isinstance(value, list):
        why = differs or "not a JSON list of class names"
        raise DamagedFileError(
            f"{path} was changed after the run wrote it ({why})",
            f"{FIXES[LABELS]}, or start the run again with --force",
        )


def _best_epoch(run: Path, state: dict) -> tuple[int, int] | None:
    """(epoch, stage) whose score ``state["best"]`` is, from ``history.csv`` (the first one)."""
    best = state.get("best")
    if best is None:
        return None
    try:
        with open(Path(run) / HISTORY, newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError:
        return None
    # Multi-label runs keep by PR AUC, segmentation runs (tlkit.segment) by mean IoU.
    for key in ("val_pr_auc", "pr_auc", "val_mean_iou", "mean_iou", "val_accuracy", "accuracy"):
        for r in rows:
            try:
                if r.get(key) and float(r[key]) == float(best) and int(r["epoch"]) < int(state["next_epoch"]):
                    return int(r["epoch"]), int(r["stage"])
            except (TypeError, ValueError, KeyError):
                continue
    return None


def resume_from_best(run: Path, state: dict) -> dict | None:
    """The state that resumes right after the epoch ``best.keras`` holds (``None`` if unknown)."""
    found = _best_epoch(run, state)
    if found is None:
        return None
    epoch, stage = found
    out = {k: v for k, v in state.items() if k != "files"}
    out.update({"next_epoch": epoch + 1, "stage": stage})
    if stage == 1:
        out.update({"stage_start": 0})
        out.pop("unfrozen", None)
    return out


def load_resume_checkpoint(
    run: Path, state: dict, load: Callable[[Path], Any], log: Callable[[str], None]
) -> tuple[Any, dict, str]:
    """(model, state to resume from, its checkpoint's name): ``last.keras``, else the newest
    checkpoint that loads.

    Each is verified before any training. When ``last.keras`` is damaged or missing and
    ``best.keras`` loads, the run resumes right after the epoch ``best.keras`` holds (the later
    epochs are trained again), and ``log`` says so in one line.
    """
    run = Path(run)
    problems = []
    try:
        model = load(run / LAST)
    except DamagedFileError as exc:
        problems.append(exc.problem)
    except FileNotFoundError:
        problems.append(f"{run / LAST} is missing")
    else:
        if state.get("best") is not None and not (run / BEST).is_file():
            log(f"{run / BEST} is missing: the epochs still to train choose a new one")
            state = {**state, "best": None}
        return model, state, LAST
    fallback = resume_from_best(run, state) if (run / BEST).is_file() else None
    if fallback is not None:
        try:
            model = load(run / BEST)
        except DamagedFileError as exc:
            problems.append(exc.problem)
        else:
            log(
                f"{problems[0]}: resuming from {BEST} instead, after epoch {fallback['next_epoch'] - 1} "
                f"(the epochs after it are trained again)"
            )
            return model, fallback, BEST
    raise DamagedFileError(
        f"no checkpoint of {run} can be resumed from: {', and '.join(problems)}"
        + ("" if fallback is not None or not (run / BEST).is_file() else f"; {BEST}'s epoch is not in history.csv"),
        f"{_RESTORE}, or start the run again with --force",
    )


def check_saved_config(run: Path, saved: dict, given: Any, must_match: tuple[str, ...]) -> None:
    """Refuse a resume whose flags ``must_match`` (fields of the config ``given``) differ from the saved run's."""
    from tlkit.errors import RunDirError
    from tlkit.finetune.config import same_data

    for name in must_match:
        now, made = getattr(given, name), saved.get(name)
        if made is not None and not (same_data(now, made) if name == "data" else now == made):
            flag = f"--{name.replace('_', '-')}"
            raise RunDirError(
                f"--resume: {run} was made with {flag} {made}, not {flag} {now}; "
                f"resume with {flag} {made}, or start a new run with another --name"
            )


def check_resumable(run: Path, state: dict) -> None:
    """Find a resumed run's damage now, before any data is read or any epoch trained: its labels, its
    history against ``state``, and ``best.keras`` (read only at the end, so checked here)."""
    check_labels(run)
    check_history(run, state)
    if (run / BEST).is_file():
        check_checkpoint(run / BEST, BEST_FIX)
