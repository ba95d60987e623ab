"""The grid of a run: cells (a method at a retention), the baseline once, in run order."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from ..config import STCConfig
from ..methods import list_methods

BASELINE = "none"
DEFAULT_RETENTIONS = (0.10, 0.05, 0.02, 0.01)  # the paper's table


@dataclass(frozen=True)
class Cell:
    """One column of the grid: a method at a retention (the baseline: "none" at 1.0)."""

    method: str
    retention: float
    positions: str | None = None  # None: the method's own rule; else forced (STCConfig.positions)

    def config(self) -> STCConfig | None:
        if self.method == BASELINE:
            return None
        return STCConfig(retention=self.retention, method=self.method, positions=self.positions)

    @property
    def label(self) -> str:
        return BASELINE if self.method == BASELINE else f"{self.method} {pct(self.retention)}"


def pct(retention: float) -> str:
    return f"{100 * retention:g}%"


def rkey(retention: float) -> float:
    return round(float(retention), 6)


def grid(methods: Iterable[str], retentions: Iterable[float], positions: str | None = None) -> list[Cell]:
    """Cells in run order: the baseline once (if asked for), then each method at each retention;
    ``positions`` forces one position-id rule on every compressing cell (None: each method's own)."""
    methods = list(dict.fromkeys(methods))
    retentions = list(dict.fromkeys(rkey(r) for r in retentions))
    known = list_methods()
    for m in methods:
        if m not in known:
            raise ValueError(f"unknown method {m!r}; available: {', '.join(known)}")
    for r in retentions:
        if not 0 < r <= 1:
            raise ValueError(f"retention must be in (0, 1], got {r!r}")
    cells = [Cell(BASELINE, 1.0)] if BASELINE in methods else []
    cells += [Cell(m, r, positions) for m in methods if m != BASELINE for r in retentions]
    if not cells:
        raise ValueError("the grid is empty: give at least one method (and a retention unless it is 'none')")
    return cells
