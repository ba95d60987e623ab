"""stc.StreamCompressor: exact within one window, a bounded-cost stream beyond it."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import stc
from stc.stream import WINDOW_FRAMES, StreamCompressor

ROOT = Path(__file__).resolve().parents[1]
FIELDS = ("tokens", "source", "assignment", "selected")


def _video(t, n, d, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(t, n, d, generator=g), torch.rand(t, n, generator=g)


def _stream(features, scores, budget, chunks, **kwargs):
    sc = StreamCompressor(budget, **kwargs)
    bounds = np.cumsum([0] + list(chunks))
    assert bounds[-1] == features.shape[0]
    for a, b in zip(bounds[:-1], bounds[1:]):
        sc.add(features[a:b], scores[a:b])
    return sc, sc.finish()


def _check_contract(features, budget, out):
    """What every Compressed promises: budget tokens, sources strictly increasing and in range,
    every input token assigned, pooled tokens unchanged, refilled tokens the mean of members."""
    t, n, d = features.shape
    flat = features.reshape(t * n, d)
    assert out.tokens.shape == (budget, d) and out.tokens.dtype == features.dtype
    assert out.source.shape == (budget,) and out.assignment.shape == (t * n,)
    assert bool((out.source[1:] > out.source[:-1]).all())
    assert 0 <= int(out.source.min()) and int(out.source.max()) < t * n
    a = out.assignment
    assert bool(((a >= -1) & (a < budget)).all())
    if bool((a == -1).any()):
        assert bool(out.selected.all())
    assert torch.equal(a[out.source], torch.arange(budget))
    counts = torch.bincount(a[a >= 0], minlength=budget)
    assert bool((counts[out.selected] == 1).all())
    assert torch.equal(out.tokens[out.selected], flat[out.source[out.selected]])
    refilled = torch.nonzero(~out.selected).squeeze(1)
    if refilled.numel():
        sums = torch.zeros(budget, d, dtype=torch.float64).index_add_(0, a.clamp_min(0), flat.double() * (a >= 0)[:, None])
        means = sums[refilled] / counts[refilled, None]
        torch.testing.assert_close(out.tokens[refilled].double(), means, atol=1e-5, rtol=1e-5)


def test_exact_within_one_window_bit_for_bit():
    """64 frames of 196 tokens, added in uneven chunks: finish() is compress_tokens on the whole."""
    assert WINDOW_FRAMES >= 64
    features, scores = _video(64, 196, 16, 0)
    sc, out = _stream(features, scores, 250, [1, 7, 20, 30, 6])
    assert sc.exact
    ref = stc.compress_tokens(features, scores, 250)
    for name in FIELDS:
        assert torch.equal(getattr(out, name), getattr(ref, name)), name


def test_a_method_that_streams_builds_its_own_compressor():
    """`Method.compressor` is how a method streams: stc's twin of its `compress` (exact within
    a window), stc-st's temporal one with its gap; a method that does not stream refuses."""
    features, scores = _video(20, 16, 8, 5)
    config = stc.STCConfig(retention=0.25)
    stc_method = stc.get_method("stc")
    assert stc_method.streams and stc.get_method("stc-st").streams and not stc.get_method("holitom").streams
    sc = stc_method.compressor(config, 80)
    sc.add(features, scores)
    out, ref = sc.finish(), stc_method.compress(features, scores, 80, grid=(4, 4), config=config)
    for name in FIELDS:
        assert torch.equal(getattr(out, name), getattr(ref, name)), name
    st = stc.get_method("stc-st").compressor(config.replace(method="stc-st", options={"gap": 3}), 80)
    assert st.temporal and st.gap == 3
    with pytest.raises(ValueError, match="does not stream"):
        stc.get_method("holitom").compressor(config.replace(method="holitom"), 80)


@pytest.mark.parametrize("budget", [1, 3, 40])
def test_exact_small_videos_and_budgets(budget):
    features, scores = _video(5, 9, 4, budget)
    sc, out = _stream(features, scores, budget, [2, 3], tau=0.5, cluster_ratio=0.5, knn_k=3)
    ref = stc.compress_tokens(features, scores, budget, tau=0.5, cluster_ratio=0.5, knn_k=3)
    assert all(torch.equal(getattr(out, f), getattr(ref, f)) for f in FIELDS)


@pytest.mark.parametrize("frames", [9, 17, 40, 100])
@pytest.mark.parametrize("budget", [1, 7, 60, 300, "all"])
def test_budget_exact_and_contract_beyond_the_window(frames, budget):
    """Past the window (8 frames here, blocks of 3): exactly `budget` tokens, sources strictly
    increasing and in range, every token assigned, refilled tokens the means of their members."""
    budget = frames * 12 if budget == "all" else min(budget, frames * 12)
    features, scores = _video(frames, 12, 8, frames * 1000 + budget)
    sc, out = _stream(features, scores, budget, [4] * (frames // 4) + [frames % 4] * bool(frames % 4),
                      window=8, block=3)
    assert not sc.exact
    _check_contract(features, budget, out)
    assert int(out.selected.sum()) <= budget - round(0.3 * budget) + (budget == 1)


def test_result_does_not_depend_on_how_frames_are_chunked():
    features, scores = _video(50, 10, 6, 3)
    _, a = _stream(features, scores, 80, [50], window=10, block=4)
    _, b = _stream(features, scores, 80, [1] * 50, window=10, block=4)
    _, c = _stream(features, scores, 80, [13, 29, 8], window=10, block=4)
    for name in FIELDS:
        assert torch.equal(getattr(a, name), getattr(b, name)) and torch.equal(getattr(a, name), getattr(c, name))


def test_stream_keeps_the_distinct_frames_of_a_redundant_video():
    """20 copies of one frame and 3 distinct frames among 100: the pool must spend on the
    distinct ones (unified selection across blocks), as the exact algorithm does."""
    g = torch.Generator().manual_seed(5)
    base = torch.randn(1, 16, 8, generator=g)
    features = base.repeat(100, 1, 1) + 0.01 * torch.randn(100, 16, 8, generator=g)
    distinct = [10, 55, 97]
    features[distinct] = torch.randn(3, 16, 8, generator=g)
    scores = torch.rand(100, 16, generator=g)
    _, out = _stream(features, scores, 60, [10] * 10, window=16, block=8)
    frames = (out.source[out.selected] // 16).unique().tolist()
    assert set(distinct) <= set(frames)
    # the 97 near-identical frames hold few of the 42 pooled tokens
    assert int((~torch.isin(out.source[out.selected] // 16, torch.tensor(distinct))).sum()) <= 16


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="budget"):
        StreamCompressor(0)
    with pytest.raises(ValueError, match="tau"):
        StreamCompressor(5, tau=0)
    with pytest.raises(ValueError, match="window"):
        StreamCompressor(5, window=0)
    sc = StreamCompressor(50)
    with pytest.raises(ValueError, match="no frames"):
        sc.finish()
    sc.add(torch.zeros(2, 4, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="scores"):
        sc.add(torch.zeros(2, 4, 3), torch.zeros(2, 5))
    with pytest.raises(ValueError, match="every chunk"):
        sc.add(torch.zeros(2, 5, 3), torch.zeros(2, 5))
    with pytest.raises(ValueError, match=r"budget must be an integer in \[1, 8\]"):
        sc.finish()


def _patch_features(frames: np.ndarray, grid: int = 14) -> tuple[torch.Tensor, torch.Tensor]:
    """A cheap deterministic feature extractor: each frame as grid x grid patches of 4x4 RGB
    pixels; a patch's feature is its texture (48 values: pixels minus the patch's mean colour)
    and its colour against the frame's mean (3 values, x2); score = the feature's norm."""
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0
    x = torch.nn.functional.interpolate(x, size=(4 * grid, 4 * grid), mode="area")
    t = x.shape[0]
    p = x.reshape(t, 3, grid, 4, grid, 4).permute(0, 2, 4, 1, 3, 5).reshape(t, grid * grid, 3, 16)
    colour = p.mean(-1)
    texture = (p - colour[..., None]).reshape(t, grid * grid, 48)
    features = torch.cat([texture, 2 * (colour - colour.mean(dim=1, keepdim=True))], -1)
    return features, features.norm(dim=2)


@pytest.fixture
def one_thread():
    """One torch thread: on a shared 2-core machine several times faster for these sizes."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_needle_frames_keep_a_token_at_1000_tokens_over_520_frames(gradio_clip, one_thread):
    """3 frames of b.mp4 inside 520 frames of world.mp4 (features: pooled pixels, see
    _patch_features); at a budget of 1,000 tokens (0.85%) the needle still sends a token."""
    host = stc.load_video(gradio_clip("world.mp4"), num_frames=517, max_side=224).frames
    needle = stc.load_video(gradio_clip("b.mp4"), num_frames=3, max_side=224).frames
    at = 400
    frames = np.concatenate([host[:at], needle, host[at:]])
    features, scores = _patch_features(frames)
    sc = StreamCompressor(1000)
    for s in range(0, len(frames), 32):
        sc.add(features[s : s + 32], scores[s : s + 32])
    out = sc.finish()
    assert not sc.exact and out.tokens.shape[0] == 1000
    kept_frames = set((out.source // 196).tolist())
    assert kept_frames & {at, at + 1, at + 2}, "no token of the needle frames reached the output"


_MEMORY_SCRIPT = """
import json, resource, sys, torch
from stc.stream import StreamCompressor
torch.set_num_threads(1)  # on a shared 2-core machine one thread is several times faster
frames, n, d = int(sys.argv[1]), 32, 512
sc = StreamCompressor(64)
held = 0
g = torch.Generator().manual_seed(0)
for s in range(0, frames, 8):
    sc.add(torch.randn(8, n, d, generator=g), torch.rand(8, n, generator=g))
    held = max(held, sc.state_bytes)
out = sc.finish()
assert out.tokens.shape == (64, d) and not sc.exact
print(json.dumps({"held": held, "rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def test_memory_does_not_grow_with_frames():
    """128 vs 1,024 frames (32 tokens of 512 dims: 67 MB of features at 1,024 frames): the
    compressor's held tensors and the process's peak RSS stay flat beyond one block; only the
    int64 label per token (256 KB at 1,024 frames) grows."""
    runs = {}
    for frames in (128, 1024):
        run = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT, str(frames)], cwd=ROOT, capture_output=True,
                             text=True, timeout=300)
        assert run.returncode == 0, run.stderr[-2000:]
        runs[frames] = json.loads(run.stdout.strip().splitlines()[-1])
    grown_held = runs[1024]["held"] - runs[128]["held"]
    grown_rss = (runs[1024]["rss_kb"] - runs[128]["rss_kb"]) * 1024
    all_features = 896 * 32 * 512 * 4
    assert grown_held < 2 * 2**20, runs
    assert grown_rss < all_features / 4, runs
