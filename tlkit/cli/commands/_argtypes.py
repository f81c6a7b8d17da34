"""Argument types that refuse bad values at parse time, with the accepted range in the message.

Argparse turns the ``ArgumentTypeError`` into one ``tlkit CMD: error: ...`` line and exit 2
(see ``tlkit.cli.main``), before anything is read, built or written.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any


def positive_int(text: str) -> int:
    """An integer >= 1 (batch sizes, epochs of a stage that must run, counts)."""
    return _int_at_least(text, 1)


def non_negative_int(text: str) -> int:
    """An integer >= 0 (epochs of an optional stage, patience where 0 means off)."""
    return _int_at_least(text, 0)


def _int_at_least(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= {low}, got {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
    return value


def image_side(text: str) -> int:
    """An image height or width in pixels: 8 .. 8192 (a model's minimum is checked when it is built)."""
    value = _int_at_least(text, 1)
    if not 8 <= value <= 8192:
        raise argparse.ArgumentTypeError(f"image sides must be 8..8192 pixels, got {value}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0 (learning rates)."""
    value = _finite(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    """A finite number >= 0 (weight decay)."""
    value = _finite(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def fraction(text: str) -> float:
    """A finite number in [0, 1) (dropout, validation split)."""
    value = _finite(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text!r}")
    return value


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def byte_size(text: str) -> str:
    """A size such as 500MiB or 2GiB (kept as written; :func:`tlkit.data.cache.parse_budget` reads it)."""
    from tlkit.data.cache import parse_budget
    from tlkit.errors import ConfigError

    try:
        parse_budget(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc).replace("--cache-budget ", "")) from None
    return text


def randaugment(text: str) -> str:
    """``N,M`` for --randaugment (kept as ``N,M``; :func:`tlkit.finetune.config.parse_randaugment` reads it)."""
    from tlkit.errors import ConfigError
    from tlkit.finetune.config import parse_randaugment

    try:
        n, m = parse_randaugment(text)  # type: ignore[misc]
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc).replace(f"--randaugment {text}: ", "")) from None
    return f"{n},{m}"


def by_kind(kind: str) -> Callable[[str], Any]:
    """The parser named by a config field's ``kind`` metadata (see :mod:`tlkit.finetune.config`)."""
    parsers: dict[str, Callable[[str], Any]] = {
        "str": str,
        "int": int,
        "positive_int": positive_int,
        "non_negative_int": non_negative_int,
        "image_side": image_side,
        "positive_float": positive_float,
        "non_negative_float": non_negative_float,
        "fraction": fraction,
        "byte_size": byte_size,
        "randaugment": randaugment,
    }
    try:
        return parsers[kind]
    except KeyError:
        raise ValueError(f"no argument parser named {kind!r}; known: {', '.join(sorted(parsers))}") from None
