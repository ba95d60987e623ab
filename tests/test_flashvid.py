"""What FlashVID's official code does, pinned (issue 23), in the style of test_peers_faithful.

Each test restates one behaviour of the official implementation (Fanziyang-v/FlashVID:
``flashvid/utils.py`` segment / segment_compression / spatiotemporal_compression,
``token_selection.py`` attn_div(_v2), ``configuration_flashvid.py`` and the ``flashvid()``
defaults) on a small constructed video and checks the port against it. The references below are
written from the official algorithms, independently of `stc.methods.flashvid`. The shared
contract (exact budget, order, identity at 100%, end to end) is tests/test_methods.py's.
"""

import math

import pytest
import torch

import stc
from stc.methods.flashvid import adts, cluster_counts, flashvid_outer, segment_lengths, split_budget
from stc.models.inner import InnerContext


def _run(features, scores, budget, retention=0.1, **options):
    config = stc.STCConfig(retention=retention, method="flashvid", options=options or None)
    n = features.shape[1]
    return stc.get_method("flashvid").compress(features, scores, budget, grid=(1, n), config=config)


# -- DySeg ----------------------------------------------------------------------------------------
def _official_segments(frame_features, threshold, min_segments):
    """utils.segment + additional_segment (topk of the uncut transitions; distinct values)."""
    g = frame_features / frame_features.norm(dim=-1, keepdim=True)
    sims = (g[:-1] * g[1:]).sum(-1)
    cuts = torch.where(sims < threshold)[0]
    if cuts.numel() + 1 < min_segments:
        rest = sims.clone()
        rest[rest < threshold] = 1.0
        extra = torch.topk(rest, k=min(min_segments - cuts.numel() - 1, rest.numel()), largest=False).indices
        cuts = torch.cat([cuts, extra]).sort().values
    bounds = [-1] + cuts.tolist() + [frame_features.shape[0] - 1]
    return [b - a for a, b in zip(bounds[:-1], bounds[1:])]


def _frames_with_transitions(cosines):
    """Frame features (2-D unit vectors) whose consecutive cosines are ``cosines``."""
    angles = torch.cumsum(torch.tensor([0.0] + [math.acos(c) for c in cosines], dtype=torch.float64), 0)
    return torch.stack([angles.cos(), angles.sin()], dim=1).float()


def test_dyseg_cuts_below_the_threshold_then_the_lowest_others():
    frames = _frames_with_transitions([0.95, 0.5, 0.99, 0.97, 0.92])
    assert segment_lengths(frames, 0.9, 1) == [2, 4]  # only the 0.5 transition is below 0.9
    # 4 segments wanted: the two lowest of the others (0.92, 0.95) are cut too
    assert segment_lengths(frames, 0.9, 4) == [1, 1, 3, 1] == _official_segments(frames, 0.9, 4)
    assert segment_lengths(frames, 0.9, 8) == [1] * 6  # every transition: as many as exist


@pytest.mark.parametrize("seed", range(5))
def test_dyseg_matches_the_official_rule(seed):
    g = torch.Generator().manual_seed(seed)
    frames = torch.randn(1, 6, generator=g) + 0.4 * torch.randn(20, 6, generator=g)
    for threshold, min_segments in ((0.9, 8), (0.95, 4), (0.5, 8), (0.99, 2)):
        assert segment_lengths(frames, threshold, min_segments) == _official_segments(frames, threshold, min_segments)


# -- ADTS -------------------------------------------------------------------------------------
def _official_adts(x, attn, count, segment_mean=None):
    """token_selection.attn_div_based_token_selection (v2 when segment_mean is given), one frame."""
    unit = x.double() / x.double().norm(dim=-1, keepdim=True)
    w = attn.double() * 1e6
    if segment_mean is not None:
        w = w * (x.double() @ segment_mean.double())
    dist = (1.0 - unit @ unit.T) * w[None, :]  # dist[i, j]: column j scaled by candidate j
    keep = [int(torch.topk(dist, k=2, dim=0, largest=False).values[1].argmax())]
    for _ in range(1, count):
        nearest = dist[keep].min(dim=0).values
        nearest[keep] = -1
        keep.append(int(nearest.argmax()))
    return sorted(keep)


@pytest.mark.parametrize("seed", range(6))
def test_adts_is_the_calibrated_max_min_selection(seed):
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(3, 20, 6, generator=g) + 1.5  # positive dot products with the mean
    attn = torch.rand(3, 20, generator=g)
    counts = [5, 4, 5]
    v1 = adts(features, attn, counts, "attn_div")
    v2 = adts(features, attn, counts, "attn_div_v2")
    mean = features.mean(dim=(0, 1))  # v2: the segment's mean token
    for f in range(3):
        assert torch.nonzero(v1[f]).squeeze(1).tolist() == _official_adts(features[f], attn[f], counts[f])
        assert torch.nonzero(v2[f]).squeeze(1).tolist() == _official_adts(features[f], attn[f], counts[f], mean)


def test_adts_first_pick_is_the_most_isolated_by_attention():
    # x0, x1 near-identical twins; x2, x3 each other's nearest (a tie, to the lower index)
    x = torch.tensor([[1.0, 0.0], [0.99, 0.14], [0.0, 1.0], [-1.0, 0.5]])

    def picks(attn, count):
        return torch.nonzero(adts(x[None], attn[None], [count], "attn_div")[0]).squeeze(1).tolist()

    assert picks(torch.ones(4), 1) == [2]
    assert picks(torch.tensor([1.0, 1.0, 1.0, 1.1]), 1) == [3]  # attention breaks the tie
    # a hundredfold attention makes a twin the first pick; its twin is then the nearest to a
    # pick and is not the second: the farthest (x3) is
    assert picks(torch.tensor([1.0, 100.0, 1.0, 1.0]), 2) == [1, 3]


def test_budget_split_is_even_with_the_official_ceil():
    assert split_budget(40, 2, 0.7) == ([20, 20], [14, 14])
    assert split_budget(50, 2, 0.7) == ([25, 25], [18, 18])  # ceil(17.5): the official 10% x 1.25 of 196
    assert split_budget(157, 8, 0.7) == ([19, 20, 19, 20, 20, 19, 20, 20], [14] * 8)
    assert split_budget(3, 4, 0.7) == ([0, 1, 1, 1], [0, 1, 1, 1])
    assert cluster_counts(5, [3, 0, 1, 4]) == [2, 0, 1, 2]  # one per frame with roots, the rest by size
    assert cluster_counts(1, [3, 0, 1]) == [1, 0, 0]


# -- TSTM ---------------------------------------------------------------------------------------
def _tree_video():
    """3 frames x 3 places of one-hot looks: e1 and e3 persist (moving between places), e2 is
    replaced by e4 in frame 1, which persists. Trees: {e1 x 3}, {e3 x 3}, {e2}, {e4 x 2}."""
    e = torch.eye(4)
    frames = [[e[0], e[1], e[2]], [e[2], e[3], e[0]], [e[2], e[3], e[0]]]
    return torch.stack([torch.stack(f) for f in frames]), e


def test_tstm_links_each_token_to_its_most_similar_token_of_the_previous_frame_anywhere():
    features, e = _tree_video()
    out = flashvid_outer(features, torch.rand(3, 3), 4, alpha=0.0, min_segments=1, segment_threshold=-1.0)
    # one token per tree, at its root (the earliest frame); e4's tree is rooted in frame 1
    assert out.source.tolist() == [0, 1, 2, 4]
    assert out.assignment.tolist() == [0, 1, 2, 2, 3, 0, 2, 3, 0]
    # the official arithmetic: a tree's sum over 1 + its root's DIRECT children
    torch.testing.assert_close(out.tokens, torch.stack([1.5 * e[0], e[1], 1.5 * e[2], e[3]]))
    assert out.selected.tolist() == [False, True, False, False]
    mean = flashvid_outer(features, torch.rand(3, 3), 4, alpha=0.0, min_segments=1, segment_threshold=-1.0,
                          tree_mean=True)
    torch.testing.assert_close(mean.tokens, e)


def test_tstm_keeps_only_the_strongest_links_when_roots_run_short():
    features, e = _tree_video()
    features[2, 1] = 0.9 * e[3] + 0.1 * e[1]  # the weakest link (cos 0.994) is cut first
    out = flashvid_outer(features, torch.rand(3, 3), 5, alpha=0.0, min_segments=1, segment_threshold=-1.0)
    assert out.source.tolist() == [0, 1, 2, 4, 7]
    assert bool(out.selected[-1]) and torch.equal(out.tokens[-1], features[2, 1])


def test_adts_tokens_are_never_part_of_a_tree():
    features, e = _tree_video()
    scores = torch.full((3, 3), 0.1)
    scores[0, 0] = 1.0  # frame 0's e1 is frame 0's ADTS pick
    out = flashvid_outer(features, scores, 5, alpha=0.4, min_segments=1, segment_threshold=-1.0)
    # shares [1, 2, 2] -> one ADTS pick per frame (frames 1 and 2: e3, the first of equals), two
    # TSTM slots, one per frame with roots; the e1 tokens of frames 1 and 2 cannot join the
    # picked e1 of frame 0
    assert bool(out.selected[out.assignment[0]]) and int((out.assignment == out.assignment[0]).sum()) == 1
    assert out.source.tolist()[:1] == [0] and {3, 6} <= set(out.source.tolist())
    assert out.assignment[5] == out.assignment[8] != out.assignment[0]  # e1 of frames 1, 2: one tree
    assert out.tokens.shape[0] == 5 and bool((out.assignment >= 0).all())


def test_spatial_merging_is_dpc_knn_per_frame_over_tree_tokens():
    features, e = _tree_video()
    out = flashvid_outer(features, torch.rand(3, 3), 3, alpha=0.0, min_segments=1, segment_threshold=-1.0)
    # 4 roots (3 in frame 0, 1 in frame 1) for 3 slots: frame 0 gets 2 clusters, frame 1 one
    assert out.source.tolist() == [0, 1, 4]
    assert out.assignment.tolist() == [0, 1, 1, 1, 2, 0, 1, 2, 0]
    # DPC-kNN over [1.5 e1, e2, 1.5 e3] (k = 2, self counted): e2 and 1.5 e3 share a cluster,
    # the cluster token is the mean of its tree tokens
    torch.testing.assert_close(out.tokens[1], (e[1] + 1.5 * e[2]) / 2)


# -- the method as registered -----------------------------------------------------------------
def test_official_defaults_counts_and_layer():
    method = stc.get_method("flashvid")
    assert method.options == {"alpha": 0.7, "temporal_threshold": 0.8, "segment_threshold": 0.9, "min_segments": 8,
                              "selection": "attn_div_v2", "k": 7, "llm_retention": 0.3, "tree_mean": False}
    assert method.positions == "contiguous" and method.inner_attention == "previous"
    assert method.default_layer(28) == 20 and method.default_layer(24) == 17 and method.default_layer(4) == 3
    config = stc.STCConfig(retention=0.1, method="flashvid")
    assert method.counts(config, 1568) == (157, 47)  # 10% enters the LLM, 30% of it stays after K
    assert method.counts(config.replace(inner_keep=1.0), 1568) == (157, 157)
    assert method.stream is None
    with pytest.raises(ValueError, match="selection"):
        stc.STCConfig(retention=0.1, method="flashvid", options={"selection": "attn"})


def test_inner_keeps_what_the_last_token_attends_to():
    visual = torch.randn(10, 4)
    attn = torch.tensor([0.1, 0.9, 0.0, 0.5, 0.2, 0.8, 0.0, 0.0, 0.3, 0.05])
    ctx = InnerContext(visual, torch.randn(2, 4), torch.rand(2, 10), attn, keep_count=3)
    merged = stc.get_method("flashvid").inner(stc.STCConfig(retention=0.1, method="flashvid"))(ctx)
    assert merged.keep_index.tolist() == [1, 3, 5] and merged.assignment.tolist().count(-1) == 7


def test_every_budget_is_exact_on_a_segmented_video():
    g = torch.Generator().manual_seed(7)
    scenes = [torch.randn(1, 16, 8, generator=g).expand(4, 16, 8) for _ in range(3)]
    features = torch.cat(scenes) + 0.05 * torch.randn(12, 16, 8, generator=g)
    scores = torch.rand(12, 16, generator=g)
    for budget in range(1, 12 * 16, 7):
        out = _run(features, scores, budget)
        assert out.tokens.shape[0] == budget and bool((out.source[1:] > out.source[:-1]).all())
        assert torch.equal(out.assignment[out.source], torch.arange(budget))
