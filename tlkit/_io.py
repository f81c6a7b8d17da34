"""Small file helpers: every write a user may rely on is atomic (temp file + rename)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` so that readers see the old file or the new one, never half."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def write_json_atomic(path: str | os.PathLike, data: Any) -> Path:
    """JSON (indented, non-JSON values as strings) written atomically."""
    return write_text_atomic(path, json.dumps(data, indent=2, default=str))


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (a lock's or a temp folder's owner)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True
