"""benchmarks/toy_evidence.py measures what a compressor keeps of the toy's evidence: its event
cells are where the question says, and its survival / red-worth measures read a stage-1 result
the way their docstrings say."""

import importlib.util
from pathlib import Path

import numpy as np
import torch

from stc.results import Compressed
from stc.toy.data import LETTERS, TEST_SEEDS, TYPES, make_sample

spec = importlib.util.spec_from_file_location("toy_evidence", Path(__file__).resolve().parents[1] / "benchmarks" / "toy_evidence.py")
toy_evidence = importlib.util.module_from_spec(spec)
spec.loader.exec_module(toy_evidence)
GRID = (14, 14)
N = GRID[0] * GRID[1]


def _seed(kind: str, start: int = TEST_SEEDS.start) -> int:
    return next(s for s in range(start, start + 40) if TYPES[s % len(TYPES)] == kind)


def _identity(frames: int) -> Compressed:
    """Every token kept as itself (what 100% retention sends to the LLM)."""
    m = frames * N
    return Compressed(torch.zeros(m, 1), torch.arange(m), torch.arange(m), torch.ones(m, dtype=torch.bool))


def test_event_cells_are_one_per_flash_in_its_frame():
    for seed in range(TEST_SEEDS.start, TEST_SEEDS.start + 40):
        sample = make_sample(seed)
        if sample.kind != "count":
            continue
        events = toy_evidence.event_cells(sample, GRID)
        assert len(events) == LETTERS.index(sample.answer) + 1
        frames = [{c // N for c in cells} for cells in events]
        assert all(len(f) == 1 for f in frames) and len({next(iter(f)) for f in frames}) == len(events)
        assert all(2 <= len(cells) <= 12 for cells in events)  # a 50-70 px square on 27 px cells


def test_everything_kept_keeps_every_event_and_all_the_red():
    sample = make_sample(_seed("count"))
    events = toy_evidence.event_cells(sample, GRID)
    kept = _identity(len(sample.frames))
    alive, merged = toy_evidence.survival(kept, events)
    assert all(alive) and not merged
    red = set().union(*events)
    assert toy_evidence.red_worth(kept, red) == len(red)


def test_one_cluster_over_two_flashes_merges_them_and_dilution_loses_them():
    sample = next(s for s in map(make_sample, range(TEST_SEEDS.start, TEST_SEEDS.start + 80))
                  if s.kind == "count" and s.answer != "A")
    events = toy_evidence.event_cells(sample, GRID)
    m = len(sample.frames) * N
    both = sorted(events[0] | events[1])
    # slot 0: one refilled token made of the first two flashes only; slot 1: everything else
    assignment = torch.ones(m, dtype=torch.long)
    assignment[both] = 0
    kept = Compressed(torch.zeros(2, 1), torch.tensor([both[0], 0 if both[0] else 1]).sort().values, assignment,
                      torch.zeros(2, dtype=torch.bool))
    alive, merged = toy_evidence.survival(kept, events)
    assert merged
    # a flash survives in the merged token only if it is at least half of its members
    assert alive[:2] == [2 * len(events[i]) >= len(both) for i in range(2)] and any(alive[:2])
    # the rest of the video in one token: the other flashes are diluted below half of it
    assert not any(alive[2:])
    red = set().union(*events)
    worth = toy_evidence.red_worth(kept, red)
    assert np.isclose(worth, 1.0 + len(red - set(both)) / (m - len(both)))


def test_object_cells_hold_every_event_and_few_of_the_clip():
    """The object cells (every saturated shape, every frame) contain each event's cells and are
    a small share of the clip; the object share of an input that keeps only them is 1, of every
    token their share of the clip."""
    for kind in ("colour", "flash", "count", "motion"):
        sample = make_sample(_seed(kind))
        objects = toy_evidence.object_cells(sample, GRID)
        assert set().union(*toy_evidence.event_cells(sample, GRID)) <= objects
        m = len(sample.frames) * N
        assert 0 < len(objects) < 0.2 * m
        assert toy_evidence.red_worth(_identity(len(sample.frames)), objects) == len(objects)
        only = sorted(objects)
        assignment = torch.full((m,), -1, dtype=torch.long)
        assignment[only] = torch.arange(len(only))
        kept = Compressed(torch.zeros(len(only), 1), torch.tensor(only), assignment, torch.ones(len(only), dtype=torch.bool))
        assert toy_evidence.red_worth(kept, objects) / len(only) == 1.0
