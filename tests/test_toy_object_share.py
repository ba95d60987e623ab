"""benchmarks/toy_object_share.py's interventions do what its docstring says: the diagnostic
selector keeps the asked share of object tokens, each as itself, and its other tokens at random
or the least typical ones; the centres twin of a method changes only its refilled tokens."""

import importlib.util
from pathlib import Path

import torch

import stc
from stc.methods import get_method

spec = importlib.util.spec_from_file_location("toy_object_share", Path(__file__).resolve().parents[1] / "benchmarks" / "toy_object_share.py")
toy_object_share = importlib.util.module_from_spec(spec)
spec.loader.exec_module(toy_object_share)
S, N, D = 4, 49, 8


def _features():
    torch.manual_seed(0)
    features = torch.randn(S, N, D) * 0.1 + torch.tensor([1.0] + [0.0] * (D - 1))  # a typical look
    features[2, :5] = torch.randn(5, D) * 3  # five atypical tokens, not objects
    return features


def test_selector_keeps_the_share_on_objects_and_the_rest_as_asked():
    features = _features()
    objects = {0 * N + 3, 1 * N + 10, 1 * N + 11, 3 * N + 40}
    toy_object_share.CURRENT["objects"] = objects
    atypical = {2 * N + i for i in range(5)}
    for share, background in ((0.5, "random"), (0.25, "distinct"), (0.0, "distinct")):
        stage1 = toy_object_share.object_share_selector(share, background=background)
        kept = stage1(features, torch.rand(S, N), 8, grid=(7, 7), config=None, options={})
        source = set(kept.source.tolist())
        assert len(source) == 8 and bool(kept.selected.all())
        assert torch.equal(kept.tokens, features.reshape(S * N, D)[kept.source])  # each kept as itself
        assert len(source & objects) == round(share * 8)
        if background == "distinct":
            assert atypical <= source  # the least typical non-object tokens come first
        assert int((kept.assignment >= 0).sum()) == 8


def test_centres_twin_changes_only_the_refilled_tokens():
    features = _features()
    base = get_method("stc-stage1")
    twin = toy_object_share.centres_of(base)
    config = stc.STCConfig(method="stc-stage1", retention=0.05)
    scores = torch.rand(S, N)
    a = base.compress(features, scores, 10, grid=(7, 7), config=config)
    b = twin.compress(features, scores, 10, grid=(7, 7), config=config)
    assert torch.equal(a.source, b.source) and torch.equal(a.selected, b.selected)
    assert torch.equal(a.tokens[a.selected], b.tokens[b.selected])
    assert torch.equal(b.tokens[~b.selected], features.reshape(S * N, D)[b.source[~b.selected]])
    assert not torch.equal(a.tokens[~a.selected], b.tokens[~b.selected])  # the means were not centres
