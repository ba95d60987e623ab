"""stc-st, the spatiotemporal variant of stc (issue 23), and stc itself left unchanged.

The shared contract (exact budget, order, determinism, identity at 100%, end to end on the tiny
model) is tests/test_methods.py's, parametrized over the registry. Here: stc's output pinned to
what it was before the variant existed; the variant's defining behaviour (a repeat far apart in
time, separated by other content, is kept once per occurrence where stc merges it); its
persistence spans on hand-checkable cases; where content persists it is stc; it streams.
"""

import hashlib
import json

import pytest
import torch

import stc
from stc.compress import dpc_knn
from stc.compress.st import compress_tokens_st, extend_spans, persistence_spans, span_ends, span_linked
from stc.stream import StreamCompressor

FIELDS = ("tokens", "source", "assignment", "selected")


def _digest(out) -> str:
    h = hashlib.sha256()
    h.update(json.dumps([out.source.tolist(), out.assignment.tolist(), out.selected.tolist()]).encode())
    h.update(out.tokens.contiguous().numpy().tobytes())
    return h.hexdigest()[:20]


# Recorded from stc.compress_tokens before stc-st was added (same inputs, same torch); since
# issue 26 that arithmetic is distances="fp32" (the default "auto" is tested in test_compress).
_STC_BEFORE = {
    (8, 16, 8, 13): "a750dcaa805d7e9eb9c5",
    (6, 12, 4, 40): "6edf5dbeee9984899445",
    (12, 9, 16, 5): "b861ba85fd927ab7b341",
    (5, 20, 6, 71): "63ec433a370de97373ff",
}


@pytest.mark.parametrize("seed, shape", list(enumerate(_STC_BEFORE)))
def test_stc_output_is_unchanged(seed, shape):
    t, n, d, budget = shape
    g = torch.Generator().manual_seed(seed)
    features, scores = torch.randn(t, n, d, generator=g), torch.rand(t, n, generator=g)
    out = stc.compress_tokens(features, scores, budget, distances="fp32")
    assert _digest(out) == _STC_BEFORE[shape]
    config = stc.STCConfig(retention=0.5, options={"distances": "fp32"})
    assert config.method == "stc" and stc.list_methods()[:3] == ["none", "stc", "stc-stage1"]
    via_registry = stc.get_method("stc").compress(features, scores, budget, grid=(1, n), config=config)
    assert all(torch.equal(getattr(out, f), getattr(via_registry, f)) for f in FIELDS)


def _recurring_event(frames=16, places=16, dim=16, events=((2, 3), (9, 7), (14, 12)), seed=0):
    """A still background (each place its own look, a little noise) and one look ("the red
    square") shown in single frames far apart, each time at another place, with the background
    in between. The event's tokens score highest, as a salient object does."""
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(1, places, dim, generator=g).expand(frames, places, dim).clone()
    features += 0.01 * torch.randn(frames, places, dim, generator=g)
    red = torch.randn(dim, generator=g)
    for t, q in events:
        features[t, q] = red + 0.01 * torch.randn(dim, generator=g)
    scores = 0.5 * torch.rand(frames, places, generator=g)
    for t, q in events:
        scores[t, q] = 1.0
    return features, scores, torch.tensor([t * places + q for t, q in events])


@pytest.mark.parametrize("budget", [20, 26, 40])
def test_stc_merges_a_repeated_event_that_stc_st_keeps_once_per_occurrence(budget):
    features, scores, red = _recurring_event()
    n = features.shape[1]
    outs = {}
    for name in ("stc", "stc-st"):
        config = stc.STCConfig(retention=0.1, method=name)
        outs[name] = stc.get_method(name).compress(features, scores, budget, grid=(4, 4), config=config)
    # stc: the first flash is pooled, the later ones are its "duplicates" (cos > tau) and end
    # up in one slot between them, so the three occurrences have fewer than three outputs
    slots = outs["stc"].assignment[red]
    assert len(set(slots.tolist())) < 3 and int(outs["stc"].selected[slots].sum()) == 1
    # stc-st: each occurrence is its own pooled token, at its own frame, kept as it is
    slots = outs["stc-st"].assignment[red]
    assert len(set(slots.tolist())) == 3 and bool(outs["stc-st"].selected[slots].all())
    assert torch.equal(outs["stc-st"].source[slots], red)
    assert torch.equal(outs["stc-st"].tokens[slots], features.reshape(-1, features.shape[2])[red])
    # the still background is deduplicated across time as stc does: one token per place, two
    # where a flash covered the place for a frame (before and after are separate stretches)
    background = outs["stc-st"].source[outs["stc-st"].selected]
    places = torch.bincount(background[~torch.isin(background, red)] % n, minlength=n)
    flashed = red % n
    assert bool((places[flashed] <= 2).all())
    assert bool((places[[q for q in range(n) if q not in flashed.tolist()]] <= 1).all())


def test_where_everything_persists_stc_st_is_stc():
    """A still video (every place keeps its look in every frame): every pair is linked, and
    the variant's result is stc's, bit for bit."""
    g = torch.Generator().manual_seed(3)
    features = torch.randn(1, 12, 8, generator=g).expand(6, 12, 8).clone()
    features += 0.02 * torch.randn(6, 12, 8, generator=g)
    scores = torch.rand(6, 12, generator=g)
    assert bool((persistence_spans(features) == 5).all())
    for budget in (1, 7, 30, 71):
        a, b = stc.compress_tokens(features, scores, budget), compress_tokens_st(features, scores, budget)
        assert all(torch.equal(getattr(a, f), getattr(b, f)) for f in FIELDS), budget


def test_span_ends_by_hand():
    # one place, 6 frames; the look of the token of frame 0 is present in frames 1, 3, 4
    present = torch.zeros(6, 6, 1, dtype=torch.bool)
    present[0, [0, 1, 3, 4], 0] = True
    present[2, [2, 3, 4, 5], 0] = True
    hi = span_ends(present, gap=0)[:, 0].tolist()
    assert hi[0] == 1  # frame 2 lacks the look: the span closes at frame 1
    assert hi[2] == 5 and hi[5] == 5 and hi[1] == 1
    assert span_ends(present, gap=1)[0, 0] == 4  # one missing frame bridged, two (5, end) not
    assert span_ends(present, gap=2)[0, 0] == 4


def test_linked_is_one_token_inside_the_others_span():
    frame = torch.tensor([0, 0, 2, 5, 7])
    hi = torch.tensor([3, 0, 2, 7, 7])
    linked = span_linked(frame, hi)(torch.arange(5), torch.arange(5))
    assert torch.equal(linked, linked.T) and bool(linked.diagonal().all())
    assert linked[0, 1] and linked[0, 2]  # same frame; frame 2 inside token 0's span 0..3
    assert not linked[0, 3] and not linked[2, 3]  # frame 5 is past both spans
    assert linked[3, 4] and not linked[1, 2]  # 7 inside 5..7; token 1's span ends at 0


def test_persistence_looks_at_the_same_place_only():
    features = torch.zeros(3, 2, 2)
    features[:, 0] = torch.tensor([1.0, 0.0])
    features[:, 1] = torch.tensor([0.0, 1.0])
    features[1] = features[1].flip(0)  # frame 1: the two looks swap places
    hi = persistence_spans(features)
    assert hi[0].tolist() == [0, 0]  # each look is gone from its own place in frame 1
    assert hi[1].tolist() == [1, 1] and hi[2].tolist() == [2, 2]


def test_time_aware_clusters_keep_occurrences_apart():
    """DPC-kNN with the persistence relation: two occurrences of one look (frames 0 and 5, not
    linked) and a background linked to both. Plain DPC-kNN puts both occurrences in one
    cluster; with the relation each gets its own."""
    g = torch.Generator().manual_seed(4)
    look, ground = torch.randn(8, generator=g), torch.randn(8, generator=g)
    x = torch.stack([look] * 3 + [look] * 3 + [ground] * 4) + 0.01 * torch.randn(10, 8, generator=g)
    frame = torch.tensor([0, 0, 0, 5, 5, 5, 0, 2, 4, 5])
    hi = torch.tensor([0, 0, 0, 5, 5, 5, 5, 5, 5, 5])
    _, plain = dpc_knn(x, 2, 3)
    assert len(set(plain[:6].tolist())) == 1
    _, timed = dpc_knn(x, 3, 3, span_linked(frame, hi))
    assert len(set(timed[:3].tolist())) == 1 and len(set(timed[3:6].tolist())) == 1
    assert timed[0] != timed[3] and timed[6] not in (timed[0], timed[3])


def test_options_and_config():
    method = stc.get_method("stc-st")
    assert method.options == {"gap": 0, "distances": "auto"} and method.stage1 is not None and method.inner is not None
    assert stc.STCConfig(retention=0.1, method="stc-st").option("gap") == 0
    with pytest.raises(ValueError, match="gap"):
        stc.STCConfig(retention=0.1, method="stc-st", options={"gap": -1})
    assert method.counts(stc.STCConfig(retention=0.1, method="stc-st"), 1000) == (100, 50)
    assert method.stream(stc.STCConfig(retention=0.1, method="stc-st", options={"gap": 2}))["gap"] == 2


# -- streaming -----------------------------------------------------------------------------------
def _stream(features, scores, budget, chunk, **kwargs):
    sc = StreamCompressor(budget, temporal=True, **kwargs)
    for a in range(0, features.shape[0], chunk):
        sc.add(features[a : a + chunk], scores[a : a + chunk])
    return sc, sc.finish()


def test_stream_is_exact_within_one_window():
    g = torch.Generator().manual_seed(5)
    features, scores = torch.randn(30, 20, 8, generator=g), torch.rand(30, 20, generator=g)
    features[10:20] = features[9]  # a still stretch, so spans matter
    sc, out = _stream(features, scores, 45, 7, gap=1)
    assert sc.exact
    ref = compress_tokens_st(features, scores, 45, gap=1)
    assert all(torch.equal(getattr(out, f), getattr(ref, f)) for f in FIELDS)


def test_extend_spans_matches_the_whole_video_spans():
    g = torch.Generator().manual_seed(6)
    features = torch.randn(1, 5, 4, generator=g).expand(12, 5, 4).clone()
    features[[3, 7, 8]] += 2.0 * torch.randn(3, 5, 4, generator=g)  # the looks change, then come back
    for gap in (0, 1, 2):
        whole = persistence_spans(features, gap=gap).reshape(-1)
        unit = torch.nn.functional.normalize(features, dim=-1)
        index = torch.arange(60)
        hi, misses = index // 5, torch.zeros(60, dtype=torch.long)
        for start in range(0, 12, 5):  # blocks of 5, 5, 2 frames
            hi, misses = extend_spans(unit.reshape(60, 4), index, hi, misses, unit[start : start + 5], start, gap=gap)
        assert torch.equal(hi, whole), gap


@pytest.mark.parametrize("frames, budget", [(40, 30), (100, 60), (17, 1), (50, 500)])
def test_stream_beyond_the_window_keeps_the_contract_and_the_recurrences(frames, budget):
    events = tuple((t, (5 * t) % 16) for t in range(3, frames, 12))
    features, scores, red = _recurring_event(frames=frames, events=events, seed=frames)
    sc, out = _stream(features, scores, budget, 5, window=8, block=4)
    assert not sc.exact and out.tokens.shape[0] == budget
    assert bool((out.source[1:] > out.source[:-1]).all())
    assert torch.equal(out.assignment[out.source], torch.arange(budget))
    assert bool(((out.assignment >= -1) & (out.assignment < budget)).all())
    flat = features.reshape(-1, features.shape[2])
    assert torch.equal(out.tokens[out.selected], flat[out.source[out.selected]])
    if budget >= 2 * red.numel() + 16:  # room for every occurrence and the background
        assert len(set(out.assignment[red].tolist())) == red.numel()
        plain = StreamCompressor(budget, window=8, block=4)
        for a in range(0, frames, 5):
            plain.add(features[a : a + 5], scores[a : a + 5])
        assert len(set(plain.finish().assignment[red].tolist())) < red.numel()


@pytest.fixture(scope="module")
def long_video(gradio_clip):
    from stc.stream import WINDOW_FRAMES

    return stc.load_video(gradio_clip("world.mp4"), num_frames=WINDOW_FRAMES + 8, max_side=384)


def test_a_long_video_streams_through_stc_st(llm, long_video):
    config = stc.STCConfig(max_tokens=300, method="stc-st")
    assert llm.streams(long_video, config)
    prep = llm.prepare(long_video, "What happens?", config)
    assert prep.kept.tokens.shape[0] == 300 and prep.encoded.streamed
    encoded = llm.adapter.encode(long_video)
    ref = StreamCompressor(300, temporal=True)
    ref.add(encoded.features, encoded.scores)
    assert torch.equal(prep.kept.source, ref.finish().source)
    assert not llm.streams(long_video, config.replace(method="flashvid"))
