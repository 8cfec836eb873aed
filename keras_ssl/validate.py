"""Argument checks shared by every layer, loss and method: each raises `KerasSSLError` with the
argument's name, the value it got and what it takes, before any work is done.

>>> check_int(3, "grid", least=2)
3
>>> check_fraction(0.75, "mask_ratio")
0.75
>>> check_probability(1.5, "p")
Traceback (most recent call last):
...
keras_ssl.errors.KerasSSLError: p must be a probability in [0, 1], got 1.5.
"""

from __future__ import annotations

import math
import numbers

from keras_ssl.errors import KerasSSLError


def is_int(value) -> bool:
    """Whether `value` is a Python or NumPy integer (not a bool)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _hint(hint: str) -> str:
    return f" {hint}" if hint else ""


def check_int(value, name: str, least: int | None = None, most: int | None = None,
              hint: str = "") -> int:
    """`value` as an int in [least, most]."""
    if not is_int(value):
        raise KerasSSLError(f"{name} must be an integer, got {value!r}.{_hint(hint)}")
    if least is not None and value < least:
        raise KerasSSLError(f"{name} must be an integer of at least {least}, got {value!r}."
                            f"{_hint(hint)}")
    if most is not None and value > most:
        raise KerasSSLError(f"{name} must be an integer of at most {most}, got {value!r}."
                            f"{_hint(hint)}")
    return int(value)


def check_number(value, name: str, least: float | None = None, above: float | None = None,
                 most: float | None = None, hint: str = "") -> float:
    """`value` as a finite float, at least `least` / strictly above `above` / at most `most`."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if isinstance(value, (bool, str, bytes)) or not math.isfinite(number):
        raise KerasSSLError(f"{name} must be a finite number, got {value!r}.{_hint(hint)}")
    for ok, words in ((least is None or number >= least, f">= {least}"),
                      (above is None or number > above, f"> {above}"),
                      (most is None or number <= most, f"<= {most}")):
        if not ok:
            raise KerasSSLError(f"{name} must be {words}, got {value!r}.{_hint(hint)}")
    return number


def check_probability(p, name: str = "p") -> float:
    """`p` as a float in [0, 1]."""
    try:
        value = float(p)
    except (TypeError, ValueError):
        value = float("nan")
    if isinstance(p, bool) or not 0.0 <= value <= 1.0:
        raise KerasSSLError(f"{name} must be a probability in [0, 1], got {p!r}.")
    return value


def check_fraction(value, name: str, what: str = "") -> float:
    """`value` as a float strictly between 0 and 1 (a share that is neither none nor all)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if isinstance(value, bool) or not 0.0 < number < 1.0:
        what = f" ({what})" if what else ""
        raise KerasSSLError(
            f"{name} must be a number strictly between 0 and 1{what}, got {value!r}."
        )
    return number


def check_range(value, name: str, low_limit: float | None = None,
                high_limit: float | None = None) -> tuple[float, float]:
    """A `(low, high)` pair of floats with `low <= high`, inside the given limits."""
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise KerasSSLError(f"{name} must be a pair (low, high) of numbers, got {value!r}.") from None
    if not low <= high:
        raise KerasSSLError(f"{name} must be (low, high) with low <= high, got {value!r}.")
    if low_limit is not None and low < low_limit:
        raise KerasSSLError(f"{name} must be >= {low_limit}, got {value!r}.")
    if high_limit is not None and high > high_limit:
        raise KerasSSLError(f"{name} must be <= {high_limit}, got {value!r}.")
    return low, high


def check_size(value, name: str, least: int = 1) -> tuple[int, int]:
    """A `(height, width)` pair of ints >= `least` from an int or a pair."""
    pair = (value, value) if is_int(value) else value
    try:
        height, width = pair
    except (TypeError, ValueError):
        height = width = None
    if not (is_int(height) and is_int(width) and height >= least and width >= least):
        raise KerasSSLError(
            f"{name} must be an integer of at least {least} or a (height, width) pair of them, "
            f"got {value!r}."
        )
    return int(height), int(width)


__all__ = ["check_fraction", "check_int", "check_number", "check_probability", "check_range",
           "check_size", "is_int"]
