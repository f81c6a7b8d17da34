"""Class names as readers take them from folder names and CSV labels.

A name is Unicode-normalised to NFC, so ``café`` typed on macOS (decomposed, NFD) and on
Linux (composed, NFC) is one class: two spellings that print identically must not become
two classes. A name that an export could not write (``labels.txt`` holds one name per line)
is refused when the data is read, before any training, rather than after it.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

from tlkit.errors import DataError


def normalise(name: str) -> str:
    """The class name in Unicode normal form C (composed characters)."""
    return unicodedata.normalize("NFC", str(name))


def merged_spellings(raw: Iterable[tuple[str, int]], what: str) -> list[str]:
    """Warnings for distinct raw names (with their file counts) that normalise to one class.

    ``raw`` holds ``(raw name, files)`` pairs; ``what`` names where the names come from
    (``"class folders"``, ``"labels in manifest X"``).
    """
    groups: dict[str, dict[str, int]] = {}
    for name, count in raw:
        spellings = groups.setdefault(normalise(name), {})
        spellings[name] = spellings.get(name, 0) + int(count)
    out = []
    for nfc, spellings in sorted(groups.items()):
        if len(spellings) > 1:
            listed = " and ".join(
                f"{ascii(s)} ({n} file(s), {_form(s)})" for s, n in sorted(spellings.items(), key=lambda kv: kv[0])
            )
            total = sum(spellings.values())
            out.append(
                f"{what} {listed} are the same name in different Unicode forms: read as one class "
                f"{nfc!r} ({total} files); rename them to one spelling to silence this warning"
            )
    return out


def _form(name: str) -> str:
    for form in ("NFC", "NFD"):
        if unicodedata.is_normalized(form, name):
            return form
    return "mixed form"


def _unwritable(name: str) -> str | None:
    """Why ``name`` cannot be a class name in an export, or None."""
    if not name.strip():
        return "is empty or only whitespace"
    if any(c in name for c in "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"):
        return "contains a line break"
    if any(unicodedata.category(c) == "Cc" for c in name):
        return "contains a control character"
    return None


def check_exportable(classes: Iterable[str], where: str, fix: str) -> None:
    """Refuse class names an export could not write: one line naming the class and ``fix``.

    ``labels.txt`` of a SavedModel holds one name per line, so a line break (or another
    control character) in a name would shift every class after it, and an empty name
    would be a blank line.
    """
    for name in classes:
        why = _unwritable(name)
        if why:
            raise DataError(
                f"class name {ascii(name)} in {where} {why}: an exported model lists one class name per line, "
                f"so it cannot be used; {fix}"
            )
