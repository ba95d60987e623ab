"""What EVS and VidCom2 (the two video pruners vLLM ships) promise, on small constructed videos.

The shared contract (exact budget, original order, determinism, identity at 100%, end to end on
the tiny model) is tests/test_methods.py's, parametrized over the registry; here: each
algorithm's defining behaviour.
"""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import stc
from stc.methods.evs import temporal_dissimilarity
from stc.methods.uniform import pooling_regions
from stc.methods.vidcom2 import frame_budgets, low_variance_channels, vidcom2_scores


def _run(name, features, budget, grid, **options):
    config = stc.STCConfig(retention=0.5, method=name, options=options or None)
    s, n, _ = features.shape
    return stc.get_method(name).compress(features, torch.zeros(s, n), budget, grid=grid, config=config)


def _static(s, n, d, seed=0):
    """A video that never changes; entries +-1, so every cosine with itself is exactly 1."""
    g = torch.Generator().manual_seed(seed)
    return (2.0 * torch.randint(0, 2, (1, n, d), generator=g) - 1.0).expand(s, n, d).clone()


# -- EVS ----------------------------------------------------------------------------------------
def test_evs_keeps_the_first_frame_and_the_tokens_that_changed():
    features = _static(4, 9, 8)
    g = torch.Generator().manual_seed(1)
    features[2:, 4] = torch.randn(8, generator=g)  # position 4 changes at frame 2 and stays
    features[3, 7] = torch.randn(8, generator=g)  # position 7 changes at the last frame
    out = _run("evs", features, 11, (3, 3))
    assert out.source.tolist() == list(range(9)) + [2 * 9 + 4, 3 * 9 + 7]
    # dropped, not merged: every output is a copied input, every other input is unrepresented
    assert bool(out.selected.all()) and int((out.assignment == -1).sum()) == 36 - 11


def test_evs_static_video_keeps_the_first_frame():
    features = _static(5, 6, 4)
    assert _run("evs", features, 6, (2, 3)).source.tolist() == list(range(6))
    # nothing changed anywhere: the rest ties at zero and goes to the lower index
    assert _run("evs", features, 8, (2, 3)).source.tolist() == list(range(8))


def test_evs_ranks_by_how_much_a_token_changed():
    features = _static(3, 4, 2)
    features[1, 0] = features[0, 0] @ torch.tensor([[0.0, -1.0], [1.0, 0.0]])  # turned 90 degrees
    features[2, 3] = -features[1, 3]  # turned 180 degrees: the largest change
    out = _run("evs", features, 5, (2, 2))
    assert out.source.tolist() == [0, 1, 2, 3, 2 * 4 + 3]
    dissim = temporal_dissimilarity(features)
    assert dissim[1, 3] == pytest.approx(2.0) and dissim[0, 0] == pytest.approx(1.0, abs=1e-6)


def test_evs_budget_below_one_frame_spreads_over_the_first_frame():
    features = torch.randn(3, 16, 4, generator=torch.Generator().manual_seed(2))
    out = _run("evs", features, 4, (4, 4))
    # one token per 2 x 2 quadrant of frame 0, at the quadrant's centre patch
    assert out.source.tolist() == [0, 2, 8, 10] == pooling_regions(4, 4, 4)[1].tolist()
    assert torch.equal(out.tokens, features[0, [0, 2, 8, 10]])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(s=st.integers(2, 5), n=st.integers(1, 6), seed=st.integers(0, 2**16), data=st.data())
def test_evs_is_a_global_top_k_of_temporal_dissimilarity(s, n, seed, data):
    """For budgets of at least one frame: frame 0, then the highest dissimilarities of the whole
    video (ties to the lower index), i.e. vLLM's ranking with the count given."""
    g = torch.Generator().manual_seed(seed)
    features = torch.randint(-1, 2, (s, n, 3), generator=g).float()  # ties and zero vectors
    budget = data.draw(st.integers(n, s * n - 1))
    score = torch.cat([torch.full((n,), float("inf")), temporal_dissimilarity(features).reshape(-1)])
    expected = torch.sort(torch.sort(score, descending=True, stable=True).indices[:budget]).values
    assert torch.equal(_run("evs", features, budget, (1, n)).source, expected)


# -- VidCom2 ------------------------------------------------------------------------------------
def _three_alike_one_apart(n=16, d=8):
    g = torch.Generator().manual_seed(3)
    base = torch.randn(n, d, generator=g)
    frames = base + 0.05 * torch.randn(4, n, d, generator=g)
    frames[3] = torch.randn(n, d, generator=g)  # a different scene
    return frames


def test_vidcom2_gives_a_distinctive_frame_more_budget():
    features = _three_alike_one_apart()
    out = _run("vidcom2", features, 16, (4, 4))
    per_frame = torch.bincount(out.source // 16, minlength=4).tolist()
    # the softmax at temperature 0.01 puts most of its mass (p ~ 0.8) on the odd frame:
    # round(16 x 0.25 x (1 + p - 1/4)) = 6 tokens there, 3 in each of the others; the reconcile
    # adds the one missing token where the similarity is lowest
    video_sim, _ = vidcom2_scores(features)
    assert frame_budgets(video_sim, 0.25, 0.01).tolist() == [3, 3, 3, 6]
    assert per_frame[3] == 6 and max(per_frame[:3]) <= 4 and sum(per_frame) == 16


def test_vidcom2_temperature_flattens_the_allocation():
    features = _three_alike_one_apart()
    out = _run("vidcom2", features, 16, (4, 4), temperature=1e6)
    assert torch.bincount(out.source // 16, minlength=4).tolist() == [4, 4, 4, 4]


def test_vidcom2_keeps_the_distinctive_tokens():
    g = torch.Generator().manual_seed(4)
    v = torch.randn(8, generator=g)
    features = v + 0.01 * torch.randn(2, 9, 8, generator=g)
    features[0, 4] = -v  # unlike its frame and the video in every channel
    features[1, 7] = -v
    out = _run("vidcom2", features, 2, (3, 3))
    assert out.source.tolist() == [4, 9 + 7]
    assert bool(out.selected.all()) and int((out.assignment >= 0).sum()) == 2


def test_vidcom2_scores_on_the_low_variance_channels():
    flat = torch.tensor([[0.0, 5.0, 1.0, -9.0], [0.0, -5.0, 1.1, 9.0], [0.0, 5.0, 0.9, -9.0]])
    # variances 0 < 0.0067 < 25 < 81: the quiet half, quietest first
    assert torch.equal(low_variance_channels(flat, 0.5), flat[:, [0, 2]])
    assert torch.equal(low_variance_channels(flat, 0.0), flat[:, [0]])  # at least one channel
    # a token that differs only in loud channels looks like the others
    features = torch.ones(2, 4, 4)
    features[1, 2, 2:] = 50.0
    video_sim, frame_sim = vidcom2_scores(features)
    assert torch.allclose(video_sim, video_sim[0, 0]) and torch.allclose(frame_sim, frame_sim[0, 0])


def test_vidcom2_rejects_bad_bandwidths():
    features = torch.randn(2, 4, 3)
    for bad in ((), (1.0, -0.5), (float("nan"),)):
        with pytest.raises(ValueError, match="bandwidths"):
            _run("vidcom2", features, 3, (2, 2), bandwidths=bad)
    with pytest.raises(ValueError, match="temperature"):
        stc.STCConfig(retention=0.5, method="vidcom2", options={"temperature": 0.0})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(s=st.integers(1, 6), n=st.integers(2, 12), seed=st.integers(0, 2**16), data=st.data())
def test_vidcom2_exact_budget_and_per_frame_prefixes(s, n, seed, data):
    """Exactly ``budget`` tokens for every budget; each frame keeps a prefix of its own tokens by
    ascending similarity (the reconcile only trims or extends those prefixes), in the direction
    of the rounding drift."""
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(1, n, 6, generator=g) + data.draw(st.sampled_from([0.1, 1.0, 3.0])) * torch.randn(
        s, n, 6, generator=g
    )
    if s > 1 and data.draw(st.booleans()):
        features[data.draw(st.integers(0, s - 1))] *= -1  # one distinctive frame
    budget = data.draw(st.integers(1, s * n - 1))
    out = _run("vidcom2", features, budget, (1, n))
    assert out.tokens.shape[0] == budget == int((out.assignment >= 0).sum())
    video_sim, frame_sim = vidcom2_scores(features)
    similarity = video_sim + frame_sim
    counts = torch.bincount(out.source // n, minlength=s)
    for t in range(s):
        prefix = torch.sort(similarity[t], stable=True).indices[: int(counts[t])]
        assert sorted(prefix.tolist()) == (out.source[out.source // n == t] % n).tolist()
    planned = frame_budgets(video_sim, budget / (s * n), 0.01)
    drift = int(planned.sum()) - budget
    assert bool((counts <= planned).all()) if drift >= 0 else bool((counts >= planned).all())
