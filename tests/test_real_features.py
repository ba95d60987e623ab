"""benchmarks/real_features.py (issue 23's real-feature check): its measures read a stage-1 result
the way their docstrings say, and stc / stc-st behave on a recurring event as the benchmark
reports. The pretrained encoder itself (ai-edge-litert + a TFLite file) is not installed here, so
its features are replaced by synthetic ones of the same shape."""

import importlib.util
from pathlib import Path

import pytest
import torch

import stc
from stc.results import Compressed

spec = importlib.util.spec_from_file_location(
    "real_features", Path(__file__).resolve().parents[1] / "benchmarks" / "real_features.py")
real_features = importlib.util.module_from_spec(spec)
spec.loader.exec_module(real_features)


def test_coverage_is_one_for_every_token_and_zero_for_the_mean():
    x = torch.randn(40, 8, dtype=torch.float64)
    spread = float(((x - x.mean(0)) ** 2).sum())
    assert real_features.coverage(x, x.float(), spread) == pytest.approx(1.0, abs=1e-6)
    assert real_features.coverage(x, x.mean(0, keepdim=True), spread) == pytest.approx(0.0, abs=1e-9)
    half = real_features.coverage(x, x[:20], spread)
    assert 0.0 < half < 1.0


def test_occurrences_kept_by_hand():
    # 4 frames x 2 tokens; outputs: slot 0 = kept token 2 (frame 1); slot 1 = a cluster at token 5
    # (frame 2) whose members are tokens 5, 6, 7 (frames 2, 3, 3): mostly frame 3's.
    n = 2
    source = torch.tensor([2, 5])
    assignment = torch.tensor([-1, -1, 0, 0, -1, 1, 1, 1])
    out = Compressed(torch.zeros(2, 1), source, assignment, torch.tensor([True, False]))
    assert real_features.occurrences_kept(out, (1, 3, 0), n) == [True, True, False]
    # the same cluster now mostly frame 2's: frame 3 has no token of its own
    out = Compressed(torch.zeros(2, 1), source, torch.tensor([-1, -1, 0, 0, 1, 1, 1, -1]), torch.tensor([True, False]))
    assert real_features.occurrences_kept(out, (2, 3), n) == [True, False]


def test_a_recurring_event_is_merged_by_stc_and_kept_by_stc_st():
    """The benchmark's setting on synthetic features: a still scene (81 tokens a frame, each its
    own look plus noise) with the same event frame cut in four times."""
    gen = torch.Generator().manual_seed(0)
    t, n, d = 32, 81, 64
    scene = torch.randn(n, d, generator=gen)
    x = scene[None].repeat(t, 1, 1) + 0.05 * torch.randn(t, n, d, generator=gen)
    event = torch.randn(n, d, generator=gen)
    where = (4, 12, 20, 28)
    x[list(where)] = event
    scores = x.norm(dim=-1)
    budget = round(0.05 * t * n)
    kept = {}
    for name in ("stc", "stc-st"):
        out = stc.get_method(name).compress(x, scores, budget, grid=(9, 9), config=stc.STCConfig(method=name, retention=0.05))
        kept[name] = real_features.occurrences_kept(out, where, n)
    assert all(kept["stc-st"])
    assert sum(kept["stc"]) < len(where)
