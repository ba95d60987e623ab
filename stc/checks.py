"""Checks of user-given numbers, worded the same wherever they are made: ``<name> must be ...,
got <value>`` (a `ValueError`). Layer 0: every layer that takes options uses these."""

from __future__ import annotations

import math
from numbers import Integral, Real

__all__ = ["check_int", "check_real"]


def check_real(name: str, value, lo: float, hi: float, *, lo_open: bool, hi_open: bool) -> float:
    """``value`` as a float, or ValueError naming the field and its allowed range (NaN and bools
    refused)."""
    left, right = ("(" if lo_open else "["), (")" if hi_open else "]")
    allowed = f"{left}{lo:g}, {hi:g}{right}"
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ValueError(f"{name} must be a number in {allowed}, got {value!r}")
    value = float(value)
    if math.isnan(value) or value < lo or value > hi or (lo_open and value == lo) or (hi_open and value == hi):
        raise ValueError(f"{name} must be in {allowed}, got {value!r}")
    return value


def check_int(name: str, value, lo: int, hi: float = math.inf) -> int:
    """``value`` as an int in [lo, hi], or ValueError naming the field and its range (bools and
    floats refused, numpy integers accepted)."""
    allowed = f"[{lo}, {'inf' if hi == math.inf else int(hi)}]"
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise ValueError(f"{name} must be an integer in {allowed}, got {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be in {allowed}, got {value!r}")
    return int(value)
