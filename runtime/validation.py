"""One place for the input checks the core shares, so every message has the same shape.

Each check names the argument, what it must be and how to fix it, and returns the normalised
value, so callers write ``device = choice("device", device, DEVICES)``. Like cleanlab's
``internal/validation.py``: public functions validate here first, then run a private core that
trusts its inputs.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any


def choice(name: str, value: Any, allowed: Sequence[str]) -> str:
    """``value`` trimmed and lower-cased if it is one of ``allowed``; else a ``ValueError``.

    Examples
    --------
    >>> choice("device", " CPU ", ("auto", "cpu", "cuda"))
    'cpu'
    >>> choice("device", "tpu", ("auto", "cpu", "cuda"))
    Traceback (most recent call last):
    ...
    ValueError: device must be one of auto, cpu, cuda (got 'tpu').
    """
    normalised = value.strip().lower() if isinstance(value, str) else value
    if normalised not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)} (got {value!r}).")
    return normalised


def check_texts(texts: Sequence[str], name: str = "texts") -> list[str]:
    """``texts`` as a list of strings, or a ``TypeError`` naming the first row that is not one.

    Examples
    --------
    >>> check_texts(("a", "b"))
    ['a', 'b']
    >>> check_texts(["ok", None])
    Traceback (most recent call last):
    ...
    TypeError: texts[1] is NoneType, not str (1 such row); fill or drop missing texts first (e.g. df[col].fillna('').astype(str)).
    """
    if isinstance(texts, str):
        raise TypeError(f"{name} must be a sequence of strings, not one string; wrap it: [text].")
    texts = list(texts)
    bad = [i for i, text in enumerate(texts) if not isinstance(text, str)]
    if bad:
        first = bad[0]
        raise TypeError(
            f"{name}[{first}] is {type(texts[first]).__name__}, not str ({len(bad)} such "
            f"row{'' if len(bad) == 1 else 's'}); fill or drop missing texts first "
            "(e.g. df[col].fillna('').astype(str))."
        )
    return texts


def is_number(value: Any) -> bool:
    """A real number that is not a bool (``True`` is an int in Python, never a setting here)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def positive_float(name: str, value: Any, hint: str = "") -> float:
    """``value`` as a float if it is a finite number > 0; else a ``ValueError`` with ``hint``."""
    if not is_number(value) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a number > 0 (got {value!r}){_hint(hint)}.")
    return float(value)


def positive_int(name: str, value: Any, hint: str = "") -> int:
    """``value`` as an int if it is a whole number > 0; else a ``ValueError`` with ``hint``.

    ``32.0`` is accepted (JSON and the UI's number widgets give floats), ``32.5`` is not.
    """
    if is_number(value) and math.isfinite(value) and float(value).is_integer() and value > 0:
        return int(value)
    raise ValueError(f"{name} must be a whole number > 0 (got {value!r}){_hint(hint)}.")


def fraction(name: str, value: Any, *, upper_inclusive: bool = True) -> float:
    """``value`` as a float in [0, 1] (or [0, 1)); else a ``ValueError``."""
    upper_ok = (lambda v: v <= 1) if upper_inclusive else (lambda v: v < 1)
    if is_number(value) and math.isfinite(value) and value >= 0 and upper_ok(value):
        return float(value)
    bound = "[0, 1]" if upper_inclusive else "[0, 1)"
    raise ValueError(f"{name} must be a number in {bound} (got {value!r}).")


def learning_rate(value: Any) -> float:
    """A fine-tuning learning rate: a number in (0, 1) (training and adaptation share it)."""
    rate = positive_float("learning_rate", value, "a typical value is 2e-5 to 1e-4")
    if rate >= 1:
        raise ValueError(
            f"learning_rate must be < 1 (got {rate}); a typical value is 2e-5 to 1e-4."
        )
    return rate


def max_length(value: Any) -> int:
    """Tokens kept per text: a whole number >= 8 (shorter leaves no room for the text)."""
    length = positive_int("max_length", value, "e.g. 64 to 512")
    if length < 8:
        raise ValueError(f"max_length must be at least 8 (got {length}); e.g. 64 to 512.")
    return length


def seed(value: Any) -> int:
    """A random seed: an integer >= 0 (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"seed must be an integer >= 0 (got {value!r}).")
    return value


def _hint(hint: str) -> str:
    return f"; {hint}" if hint else ""
