"""Contract and planted-structure tests of stage 1 (stc.compress_tokens)."""

import json
import math
import subprocess
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import stc
from stc.compress import dpc_knn


def _video(t, n, d, seed, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(t, n, d, generator=g).to(dtype), torch.rand(t, n, generator=g)


def _check_contract(features, scores, budget, out):
    t, n, d = features.shape
    flat = features.reshape(t * n, d)
    assert out.tokens.shape == (budget, d)
    assert out.tokens.dtype == features.dtype
    assert out.source.shape == (budget,) and out.selected.shape == (budget,)
    assert out.assignment.shape == (t * n,)
    assert bool((out.source[1:] > out.source[:-1]).all()), "source must be strictly increasing"
    assert 0 <= int(out.source.min()) and int(out.source.max()) < t * n
    a = out.assignment
    assert bool(((a >= -1) & (a < budget)).all())
    if bool((a == -1).any()):
        assert bool(out.selected.all()), "-1 is allowed only when the budget leaves no cluster"
    # every output slot represents at least its own source position
    assert torch.equal(a[out.source], torch.arange(budget))
    for slot in range(budget):
        members = torch.nonzero(a == slot).squeeze(1)
        if out.selected[slot]:
            assert members.tolist() == [int(out.source[slot])]
            assert torch.equal(out.tokens[slot], flat[out.source[slot]])
        else:
            mean = flat[members].double().mean(0)
            torch.testing.assert_close(out.tokens[slot].double(), mean.to(features.dtype).double())


@settings(max_examples=60, deadline=None)
@given(
    t=st.integers(1, 5),
    n=st.integers(1, 12),
    d=st.integers(2, 8),
    seed=st.integers(0, 2**16),
    frac=st.floats(0.0, 1.0),
    tau=st.floats(0.05, 1.0),
    cluster_ratio=st.floats(0.0, 0.95),
    k=st.integers(1, 9),
)
def test_contract_holds_for_any_budget(t, n, d, seed, frac, tau, cluster_ratio, k):
    features, scores = _video(t, n, d, seed)
    budget = 1 + int(frac * (t * n - 1))
    out = stc.compress_tokens(features, scores, budget, tau=tau, cluster_ratio=cluster_ratio, knn_k=k)
    _check_contract(features, scores, budget, out)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), dup=st.integers(1, 6))
def test_contract_with_duplicate_tokens_and_tied_scores(seed, dup):
    # Exact duplicates and tied scores stress the tie-breaking paths.
    base, _ = _video(2, 3, 4, seed)
    features = base.repeat(dup, 1, 1)
    scores = torch.ones(features.shape[:2])
    for budget in range(1, features.shape[0] * features.shape[1] + 1):
        out = stc.compress_tokens(features, scores, budget)
        _check_contract(features, scores, budget, out)


def test_full_budget_is_identity():
    features, scores = _video(4, 9, 16, 0)
    out = stc.compress_tokens(features, scores, 36)
    assert torch.equal(out.tokens, features.reshape(36, 16))
    assert torch.equal(out.source, torch.arange(36))
    assert torch.equal(out.assignment, torch.arange(36))
    assert bool(out.selected.all())


def test_repeated_calls_are_bit_identical():
    features, scores = _video(8, 49, 32, 1)
    a = stc.compress_tokens(features, scores, 20)
    b = stc.compress_tokens(features.clone(), scores.clone(), 20)
    for name in ("tokens", "source", "assignment", "selected"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_half_precision_inputs(dtype):
    features, scores = _video(4, 25, 16, 2, dtype)
    out = stc.compress_tokens(features, scores.to(dtype), 10)
    _check_contract(features, scores, 10, out)
    # similarities are computed in fp32: the decision matches the fp32 run on the same values
    ref = stc.compress_tokens(features.float(), scores.to(dtype).float(), 10)
    assert torch.equal(out.source, ref.source) and torch.equal(out.assignment, ref.assignment)


def test_selected_tokens_are_mutually_dissimilar_and_best_token_is_selected():
    features, scores = _video(6, 36, 8, 3)
    # plant near-duplicates so the threshold matters
    features[1] = features[0] + 0.01 * torch.randn(36, 8)
    for tau in (0.3, 0.7, 0.9):
        out = stc.compress_tokens(features, scores, 60, tau=tau, cluster_ratio=0.3)
        sel = out.tokens[out.selected].float()
        unit = torch.nn.functional.normalize(sel, dim=-1)
        cos = unit @ unit.T
        cos.fill_diagonal_(-1)
        assert float(cos.max()) < tau
        best = int(scores.reshape(-1).argmax())
        assert best in out.source[out.selected].tolist()


def test_duplicate_frames_give_budget_to_distinct_frames():
    # 16 frames: all copies of one frame except frames 5 and 11, which are distinct.
    g = torch.Generator().manual_seed(4)
    t, n, d = 16, 49, 32
    base = torch.randn(n, d, generator=g)
    features = base.repeat(t, 1, 1) + 0.001 * torch.randn(t, n, d, generator=g)
    features[5] = torch.randn(n, d, generator=g)
    features[11] = torch.randn(n, d, generator=g)
    # a token's contribution follows its content: copies of a token score alike
    scores = torch.rand(n, generator=g).repeat(t, 1) + 0.001 * torch.rand(t, n, generator=g)
    scores[5] = torch.rand(n, generator=g)
    scores[11] = torch.rand(n, generator=g)
    budget = 64
    out = stc.compress_tokens(features, scores, budget)
    per_frame = torch.bincount(out.source // n, minlength=t)
    assert int(per_frame.sum()) == budget
    equal_split = budget / t
    assert per_frame[5] > equal_split and per_frame[11] > equal_split
    # ... and frames may end with zero tokens: that is the point
    assert int((per_frame == 0).sum()) > 0


def test_dpc_knn_recovers_planted_blobs():
    g = torch.Generator().manual_seed(5)
    d, per, k = 16, 30, 4
    centres = torch.eye(d)[:k] * 20
    points = torch.cat([c + 0.3 * torch.randn(per, d, generator=g) for c in centres])
    perm = torch.randperm(per * k, generator=g)
    points, truth = points[perm], (torch.arange(per * k) // per)[perm]
    found_centres, labels = dpc_knn(points, k, k=7)
    assert found_centres.numel() == k
    # one centre per blob, and the partition equals the planted one
    assert sorted(truth[found_centres].tolist()) == list(range(k))
    for cluster in range(k):
        members = truth[labels == cluster]
        assert members.numel() == per and bool((members == members[0]).all())


def test_refilled_clusters_absorb_the_rest_when_selection_runs_dry():
    # All tokens identical: unified selection can keep one, the clusters take the remainder.
    features = torch.ones(3, 4, 8)
    scores = torch.rand(3, 4)
    out = stc.compress_tokens(features, scores, 5, cluster_ratio=0.0)
    assert out.tokens.shape[0] == 5
    assert int(out.selected.sum()) == 1


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(budget=0), "budget"),
        (dict(budget=13), "budget"),
        (dict(budget=2.5), "budget"),
    ],
)
def test_bad_budget_is_rejected(kwargs, match):
    features, scores = _video(3, 4, 8, 0)
    with pytest.raises(ValueError, match=match):
        stc.compress_tokens(features, scores, **kwargs)


def test_bad_shapes_are_rejected():
    features, scores = _video(3, 4, 8, 0)
    with pytest.raises(ValueError, match="features"):
        stc.compress_tokens(features[0], scores, 2)
    with pytest.raises(ValueError, match="scores"):
        stc.compress_tokens(features, scores[:2], 2)


_SCALE_SCRIPT = """
import json, resource, time, torch, stc
torch.manual_seed(0)
f = torch.randn(128, 196, 896)
s = torch.rand(128, 196)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
out = stc.compress_tokens(f, s, round(0.02 * 128 * 196))
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"budget": out.tokens.shape[0], "peak_growth_mib": (after - before) / 1024}))
"""


def test_scale_128_frames_memory_is_chunked():
    """25,088 tokens at 2%: a dense fp32 distance matrix alone would be 2.4 GiB."""
    res = subprocess.run([sys.executable, "-c", _SCALE_SCRIPT], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout.strip().splitlines()[-1])
    assert report["budget"] == 502
    dense_mib = 25088**2 * 4 / 2**20
    assert report["peak_growth_mib"] < dense_mib / 4, report
    assert math.isfinite(report["peak_growth_mib"])


def _reference_selection(unit, order, quota, tau):
    """The method's sequential rule, written as plainly as possible."""
    pool = []
    for c in order.tolist():
        if len(pool) == quota:
            break
        if all(float(unit[c] @ unit[p]) < tau for p in pool):
            pool.append(c)
    return pool


def _reference_dpc(x, c, k):
    """Dense DPC-kNN exactly as shared/method.md states it (index tie-break)."""
    m, dim = x.shape
    d = torch.cdist(x.double(), x.double()) / math.sqrt(dim)
    rho = []
    for i in range(m):
        others = torch.cat([d[i, :i], d[i, i + 1 :]])
        rho.append(float(torch.exp(-(others.sort().values[:k] ** 2).mean())))
    delta = []
    for i in range(m):
        denser = [j for j in range(m) if rho[j] > rho[i] or (rho[j] == rho[i] and j < i)]
        delta.append(float(d[i, denser].min()) if denser else float(d[i].max()))
    gamma = torch.tensor(rho) * torch.tensor(delta)
    centres = torch.sort(gamma, descending=True, stable=True).indices[:c]
    labels = d[:, centres].argmin(dim=1)
    labels[centres] = torch.arange(c)
    return centres, labels


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**16), m=st.integers(2, 700), tau=st.floats(0.1, 0.95))
def test_blocked_selection_equals_sequential_rule(seed, m, tau):
    g = torch.Generator().manual_seed(seed)
    unit = torch.nn.functional.normalize(torch.randn(m, 3, generator=g), dim=-1)  # dense conflicts
    order = torch.randperm(m, generator=g)
    quota = int(torch.randint(1, m + 1, (1,), generator=g))
    got = stc.unified_selection(unit, order, quota, tau).tolist()
    assert got == _reference_selection(unit, order, quota, tau)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**16), m=st.integers(3, 60), k=st.integers(2, 9))
def test_dpc_knn_equals_dense_reference(seed, m, k):
    # k >= 2: with k = 1 every mutual-nearest pair ties exactly in rho, and fp32 vs fp64
    # rounding (not the method) would decide the tie.
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(m, 5, generator=g)
    c = int(torch.randint(1, m + 1, (1,), generator=g))
    centres, labels = dpc_knn(x, c, k, distances="fp32")
    ref_centres, ref_labels = _reference_dpc(x, c, min(k, m - 1))
    assert centres.tolist() == ref_centres.tolist()
    assert labels.tolist() == ref_labels.tolist()


# -- distances="fp32": bit for bit against stc's stage 1 before issue 26 (tests/stage1_reference.py)
import stage1_reference  # noqa: E402  (tests/ is on sys.path under pytest)

_FIELDS = ("tokens", "source", "assignment", "selected")


def _assert_same(got, ref):
    for field in _FIELDS:
        assert torch.equal(getattr(got, field), getattr(ref, field)), field


def _video_like(t, n, d, seed, offset=10.0, noise=0.3):
    """Tokens as a video encoder gives them: a large shared component, content that persists
    from frame to frame at each place, a little change per frame."""
    g = torch.Generator().manual_seed(seed)
    scene = torch.randn(1, n, d, generator=g)
    drift = torch.cumsum(noise * torch.randn(t, n, d, generator=g), dim=0)
    return offset * torch.randn(d, generator=g) + scene + drift, torch.rand(t, n, generator=g)


@settings(max_examples=40, deadline=None)
@given(
    t=st.integers(1, 6),
    n=st.integers(1, 30),
    d=st.integers(2, 24),
    seed=st.integers(0, 2**16),
    frac=st.floats(0.0, 1.0),
    tau=st.floats(0.05, 1.0),
    cluster_ratio=st.floats(0.0, 0.95),
    k=st.integers(1, 20),
)
def test_stage1_is_bit_identical_to_the_reference(t, n, d, seed, frac, tau, cluster_ratio, k):
    features, scores = _video(t, n, d, seed)
    budget = 1 + int(frac * (t * n - 1))
    kwargs = dict(tau=tau, cluster_ratio=cluster_ratio, knn_k=k)
    _assert_same(stc.compress_tokens(features, scores, budget, distances="fp32", **kwargs),
                 stage1_reference.compress_tokens(features, scores, budget, **kwargs))


@pytest.mark.parametrize("retention", [0.02, 0.1, 0.3])
@pytest.mark.parametrize("seed", [0, 1])
def test_stage1_on_video_like_tokens_is_bit_identical_to_the_reference(retention, seed):
    features, scores = _video_like(16, 49, 96, seed)
    budget = round(retention * 16 * 49)
    _assert_same(stc.compress_tokens(features, scores, budget, distances="fp32"),
                 stage1_reference.compress_tokens(features, scores, budget))


@pytest.mark.parametrize("dup", [2, 4])
def test_stage1_with_duplicates_and_tied_scores_is_bit_identical_to_the_reference(dup):
    g = torch.Generator().manual_seed(dup)
    base = torch.randn(4, 30, 12, generator=g)
    features = base.repeat(dup, 1, 1)
    scores = torch.rand(4 * dup, 30, generator=g).round(decimals=1)
    for budget in (1, 7, 24, 60, 4 * dup * 30 - 1):
        _assert_same(stc.compress_tokens(features, scores, budget, distances="fp32"),
                     stage1_reference.compress_tokens(features, scores, budget))


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**16), m=st.integers(1, 80), k=st.integers(1, 20), frac=st.floats(0.0, 1.0))
def test_dpc_knn_is_bit_identical_to_the_reference(seed, m, k, frac):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(m, 6, generator=g) + 5.0
    c = int(frac * m)
    got, ref = dpc_knn(x, c, k, distances="fp32"), stage1_reference.dpc_knn(x, c, k)
    assert torch.equal(got[0], ref[0]) and torch.equal(got[1], ref[1])


def test_stage1_with_a_relation_is_bit_identical_to_the_reference():
    """stc-st's path (a ``linked`` relation) is untouched by the fast pass."""
    features, scores = _video_like(8, 20, 16, 3)
    frame = torch.arange(8 * 20) // 20

    def linked(a, b):
        return (frame[a][:, None] - frame[b][None, :]).abs() <= 2

    for budget in (3, 16, 40):
        _assert_same(stc.compress_tokens(features, scores, budget, linked=linked, distances="fp32"),
                     stage1_reference.compress_tokens(features, scores, budget, linked=linked))


# -- distances="bf16" (what "auto" picks where bf16 is faster): what one bf16 product changes-----------------------------
from stc.compress.pairwise import _Pairwise, _sq_dists  # noqa: E402


@pytest.mark.parametrize("offset", [0.0, 10.0, 300.0])
def test_bf16_distances_err_relative_to_the_distance_and_the_centred_norms(offset):
    """Each bf16 distance is within 2^-8 of the centred norms plus 2^-7 of itself of the exact
    one, whatever the tokens' shared offset (the centring removes it; without it the error
    would scale with the offset)."""
    features, _ = _video_like(6, 40, 64, 0, offset=offset)
    x = features.reshape(-1, 64)
    got = _Pairwise(x, "bf16").full(slice(None)).double().sqrt()
    exact = (torch.cdist(x.double(), x.double()) / 8.0)
    centred = (x.double() - x.double().mean(0)).norm(dim=1) / 8.0
    bound = 2**-8 * (centred[:, None] + centred[None, :]) + 2**-7 * exact + 1e-6
    assert bool(((got - exact).abs() <= bound).all()), float(((got - exact).abs() / bound).max())
    # the fp32 path is the pre-26 arithmetic: the same values _sq_dists gives
    assert torch.equal(_Pairwise(x, "fp32").full(slice(None)), _sq_dists(x, x, 1 / 64))


def test_bf16_and_fp32_agree_where_clusters_are_clear():
    """Planted blobs far apart compared with bf16's rounding: the same centres (their gamma order
    may differ: the blobs' peaks have near-equal gamma) and the same clusters."""
    g = torch.Generator().manual_seed(0)
    centres = 20 * torch.randn(8, 32, generator=g)
    x = (centres[:, None, :] + torch.randn(8, 30, 32, generator=g)).reshape(-1, 32) + 50.0
    got, ref = dpc_knn(x, 8, 7, distances="bf16"), dpc_knn(x, 8, 7, distances="fp32")
    assert sorted(got[0].tolist()) == sorted(ref[0].tolist())
    assert torch.equal(got[0][got[1]], ref[0][ref[1]])  # every token's centre


@pytest.mark.parametrize("retention", [0.02, 0.1])
def test_bf16_stage1_keeps_nearly_what_fp32_keeps_on_video_like_tokens(retention):
    features, scores = _video_like(16, 49, 96, 0)
    budget = round(retention * 16 * 49)
    fast = stc.compress_tokens(features, scores, budget, distances="bf16")
    exact = stc.compress_tokens(features, scores, budget, distances="fp32")
    _check_contract(features, scores, budget, fast)
    shared = len(set(fast.source.tolist()) & set(exact.source.tolist()))
    assert shared >= 0.9 * budget, (shared, budget)
    assert torch.equal(fast.source[fast.selected], exact.source[exact.selected])  # selection is fp32 in both


def test_distances_is_a_checked_option_of_stc_and_reaches_the_stream():
    assert stc.get_method("stc").options["distances"] == "auto"
    with pytest.raises(ValueError, match="distances"):
        stc.STCConfig(retention=0.1, options={"distances": "fp16"})
    with pytest.raises(ValueError, match="distances"):
        dpc_knn(torch.randn(5, 3), 2, distances="int8")
    features, scores = _video_like(8, 20, 16, 1)
    for name in ("stc", "stc-st"):
        config = stc.STCConfig(method=name, retention=0.1, options={"distances": "fp32"})
        method = stc.get_method(name)
        budget = config.budget(160)
        whole = method.compress(features, scores, budget, grid=(4, 5), config=config)
        stream = method.compressor(config, budget)
        assert stream.distances == "fp32"
        stream.add(features[:4], scores[:4])
        stream.add(features[4:], scores[4:])
        _assert_same(stream.finish(), whole)


# -- distances="auto" (the default): the faster arithmetic of the device ---------------------------
from stc.compress import pairwise  # noqa: E402


@pytest.mark.parametrize("fp32, bf16, picked", [(10.0, 4.0, "bf16"), (10.0, 8.0, "bf16"), (10.0, 8.1, "fp32"),
                                                (10.0, 17.0, "fp32")])
def test_auto_takes_bf16_only_where_its_product_is_clearly_faster(monkeypatch, fp32, bf16, picked):
    """On a CPU "auto" times one product of each dtype, once per thread count, and takes bf16 only
    if it is at least _AUTO_MARGIN (1.25) times faster; explicit choices pass through."""
    timed = []

    def seconds(dtype, shape=pairwise._AUTO_SHAPE):
        timed.append(dtype)
        return {torch.float32: fp32, torch.bfloat16: bf16}[dtype]

    monkeypatch.delenv("STC_DISTANCES", raising=False)
    monkeypatch.setattr(pairwise, "_product_seconds", seconds)
    monkeypatch.setattr(pairwise, "_auto_choice", {})
    assert pairwise.resolve_distances("auto", "cpu") == picked
    assert pairwise.resolve_distances("auto", torch.device("cpu")) == picked
    assert sorted(map(str, timed)) == ["torch.bfloat16", "torch.float32"]  # measured once
    assert pairwise.resolve_distances("fp32", "cpu") == "fp32" and pairwise.resolve_distances("bf16", "cpu") == "bf16"
    assert pairwise.resolve_distances("auto", "meta") == "fp32"  # no measurement off CPU / CUDA
    with _threads(1 if torch.get_num_threads() > 1 else 2):
        pairwise.resolve_distances("auto", "cpu")
    assert len(timed) == 4  # another thread count is measured again


class _threads:
    def __init__(self, n):
        self.n = n

    def __enter__(self):
        self.old = torch.get_num_threads()
        torch.set_num_threads(self.n)

    def __exit__(self, *exc):
        torch.set_num_threads(self.old)


@pytest.mark.parametrize("picked", ["bf16", "fp32"])
def test_auto_is_the_arithmetic_it_resolves_to(monkeypatch, picked):
    monkeypatch.delenv("STC_DISTANCES", raising=False)
    monkeypatch.setattr(pairwise, "_auto_choice", {torch.get_num_threads(): picked})
    features, scores = _video_like(16, 49, 96, 0)
    for budget in (16, 78):
        _assert_same(stc.compress_tokens(features, scores, budget),
                     stc.compress_tokens(features, scores, budget, distances=picked))


def test_stc_distances_fixes_what_auto_means(monkeypatch):
    monkeypatch.setattr(pairwise, "_product_seconds", lambda *a: pytest.fail("no timing when fixed"))
    for value in ("bf16", "fp32"):
        monkeypatch.setenv("STC_DISTANCES", value)
        assert pairwise.resolve_distances("auto", "cpu") == value
        assert pairwise.resolve_distances("fp32", "cpu") == "fp32"  # an explicit choice still wins
    features, scores = _video_like(8, 20, 16, 1)
    monkeypatch.setenv("STC_DISTANCES", "bf16")
    _assert_same(stc.compress_tokens(features, scores, 12), stc.compress_tokens(features, scores, 12, distances="bf16"))
    monkeypatch.setenv("STC_DISTANCES", "fp16")
    with pytest.raises(ValueError, match="STC_DISTANCES"):
        pairwise.resolve_distances("auto", "cpu")


def test_auto_measures_real_products_and_picks_an_arithmetic():
    """The real timing (no monkeypatch): both products run and the choice is one of the two."""
    assert pairwise._product_seconds(torch.float32, (64, 96, 128)) > 0
    assert pairwise._product_seconds(torch.bfloat16, (64, 96, 128)) > 0
    assert pairwise.resolve_distances("auto", "cpu") in ("bf16", "fp32")


# -- knn_window (opt-in): neighbours searched within w frames ------------------------------------
from stc.compress.pairwise import _bands, _knn_pass  # noqa: E402


@settings(max_examples=40, deadline=None)
@given(t=st.integers(1, 8), n=st.integers(1, 12), d=st.integers(2, 8), seed=st.integers(0, 2**16),
       frac=st.floats(0.0, 1.0), w=st.integers(1, 4))
def test_contract_holds_with_a_knn_window(t, n, d, seed, frac, w):
    features, scores = _video(t, n, d, seed)
    budget = 1 + int(frac * (t * n - 1))
    _check_contract(features, scores, budget, stc.compress_tokens(features, scores, budget, knn_window=w))


def test_knn_window_bounds_the_neighbour_lists_and_a_wide_one_is_the_global_search():
    features, scores = _video_like(16, 49, 32, 2)
    x = features.reshape(-1, 32)
    frame = torch.arange(16 * 49) // 49
    pairs = _Pairwise(x, "bf16")
    bands = _bands(frame, 2, 16)
    assert bands is not None and sum(r1 - r0 for r0, r1, _, _ in bands) == 16 * 49
    _, _, _, near_idx = _knn_pass(pairs, 16 * 49, 7, bands)
    assert int((frame[near_idx] - frame[:, None]).abs().max()) <= 2
    _, _, _, everywhere = _knn_pass(pairs, 16 * 49, 7)
    assert int((frame[everywhere] - frame[:, None]).abs().max()) > 2  # the bound did something
    assert _bands(frame, 16, 16) is None
    budget = 40
    _assert_same(stc.compress_tokens(features, scores, budget, knn_window=16),
                 stc.compress_tokens(features, scores, budget))


def test_knn_window_is_checked_and_reaches_the_method_and_the_stream():
    features, scores = _video_like(8, 20, 16, 1)
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="knn_window"):
            stc.compress_tokens(features, scores, 10, knn_window=bad)
    with pytest.raises(ValueError, match="knn_window"):
        stc.compress_tokens(features, scores, 10, knn_window=2, linked=lambda a, b: a[:, None] == b[None, :])
    config = stc.STCConfig(retention=0.1, options={"knn_window": 1})
    method = stc.get_method("stc")
    budget = config.budget(160)
    whole = method.compress(features, scores, budget, grid=(4, 5), config=config)
    _assert_same(whole, stc.compress_tokens(features, scores, budget, knn_window=1))
    stream = method.compressor(config, budget)
    assert stream.knn_window == 1
    stream.add(features, scores)
    _assert_same(stream.finish(), whole)


# -- the exact grouped search behind the neighbour pass (issue 26) --------------------------------
from stc.arith import segment_mean  # noqa: E402
from stc.compress.pairwise import _smallest  # noqa: E402


@settings(max_examples=60, deadline=None)
@given(r=st.integers(1, 5), c=st.integers(1, 3000), k=st.integers(1, 20), seed=st.integers(0, 2**16),
       levels=st.sampled_from([2, 7, 50, 0]),
       dtype=st.sampled_from([torch.float32, torch.bfloat16, torch.int16]), infs=st.integers(0, 40))
def test_smallest_gives_topks_values_bit_for_bit(r, c, k, seed, levels, dtype, infs):
    """The k smallest of every row, sorted, equal to torch.topk's values whatever the ties (few
    levels: many equal values; 0: continuous), the largest value (a row's own entry: inf, or
    int16's largest for the keys bf16 distances are searched as) and widths (the grouped search
    starts at 4 k groups of columns, and recurses on its minima from 4 k groups of minima: 32 k
    and 256 k columns with groups of 8)."""
    k = min(k, c)
    g = torch.Generator().manual_seed(seed)
    values = torch.randint(0, levels, (r, c), generator=g).float() if levels else 1000 * torch.randn(r, c, generator=g)
    values = values.to(dtype)
    top = math.inf if dtype.is_floating_point else torch.iinfo(dtype).max
    values.view(-1)[torch.randint(0, r * c, (infs,), generator=g)] = top
    best, cols = _smallest(values, k)
    assert torch.equal(best, torch.topk(values, k, dim=1, largest=False, sorted=True).values)
    assert torch.equal(values.gather(1, cols), best)
    assert all(len(set(row)) == k for row in cols.tolist())  # k distinct columns per row


@pytest.mark.parametrize("distances", ["bf16", "fp32"])
def test_neighbour_pass_gives_each_rows_smallest_finished_distances(distances):
    """Pass 1's k2 distances are the k2 smallest of each finished row (self excluded), bit for
    bit, though its search compares keys (bf16: bit patterns as integers): duplicated tokens
    make d^2 round below 0, whose keys sort in reverse among themselves and which finish maps
    to 0."""
    g = torch.Generator().manual_seed(3)
    base = 5 + 10 * torch.randn(300, 40, generator=g)
    x = torch.cat([base, base, base + 1e-3 * torch.randn(300, 40, generator=g)])  # 900 rows
    pairs = _Pairwise(x, distances)
    if distances == "bf16":
        assert bool((pairs.raw(slice(None)).float() < 0).sum() > 100)  # the case is there
    _, _, near_d2, near_idx = _knn_pass(pairs, 900, 7)
    full = pairs.full(slice(None))
    full.fill_diagonal_(math.inf)
    assert torch.equal(near_d2, torch.topk(full, near_d2.shape[1], dim=1, largest=False).values)
    assert torch.equal(full.gather(1, near_idx), near_d2)


@pytest.mark.parametrize("distances", ["bf16", "fp32"])
@pytest.mark.parametrize("retention", [0.02, 0.1])
def test_stage1_with_the_grouped_search_is_what_one_topk_gives(monkeypatch, distances, retention):
    """48 x 49 tokens (~2,300 columns: the grouped search runs, and recurses): bit for bit what a
    plain top-k over every row gives, and (fp32) what stc's stage 1 before issue 26 gives."""
    features, scores = _video_like(48, 49, 48, 0)
    budget = round(retention * 48 * 49)
    got = stc.compress_tokens(features, scores, budget, distances=distances)
    monkeypatch.setattr(stc.compress.pairwise, "_GROUP", 10**9)  # no group: one torch.topk per row
    _assert_same(got, stc.compress_tokens(features, scores, budget, distances=distances))
    if distances == "fp32":
        _assert_same(got, stage1_reference.compress_tokens(features, scores, budget))


@pytest.mark.parametrize("m", [1, 700, 1100])
def test_bf16_operands_are_built_block_by_block_as_at_once(m):
    """The product's operands, built a block of rows at a time (CPU), are the centred tokens
    rounded to bf16 once, their squared norm split in two bf16 parts, ones and zero padding."""
    x = 3 * torch.randn(m, 37, generator=torch.Generator().manual_seed(m)) + 1
    pairs = _Pairwise(x, "bf16")
    xr = (x - x.mean(dim=0)).to(torch.bfloat16)
    sq = torch.linalg.vector_norm(xr, dim=1, dtype=torch.float32).square()
    hi = sq.to(torch.bfloat16)
    lo = (sq - hi.float()).to(torch.bfloat16)
    one, pad = torch.ones_like(hi)[:, None], xr.new_zeros(m, 64 - 37 - 4)
    assert torch.equal(pairs.a, torch.cat([xr, hi[:, None], lo[:, None], one, one, pad], dim=1))
    assert torch.equal(pairs.bt, torch.cat([-2 * xr, one, one, hi[:, None], lo[:, None], pad], dim=1).T)


def test_segment_mean_sums_blocks_of_rows_as_one_pass_would():
    g = torch.Generator().manual_seed(0)
    x = 100 * torch.randn(2600, 24, generator=g)
    labels = torch.randint(0, 9, (2600,), generator=g)
    whole = torch.zeros(9, 24, dtype=torch.float64).index_add_(0, labels, x.double())
    counts = torch.bincount(labels, minlength=9).double()[:, None]
    assert torch.equal(segment_mean(x, labels, 9), (whole / counts).float())


# -- host reads (each one a device sync on a GPU; issue 26) ---------------------------------------
def test_host_reads_counts_what_waits_for_the_device():
    from host_reads import HostReads

    x = torch.tensor([0.5, -0.05, 1.2, -0.8, 0.02, 0.3])  # fixed: torch.randn(6) left fewer than 2 (CI, once)
    with HostReads() as reads:
        bool((x > 0).any())
        x = x[x.abs() > 0.1]  # data-dependent size
        x.sum().item()
        torch.topk(x, 2)  # the size is known: no read
        x[:2] * 2
    assert reads.total == 3, reads.calls


def test_selection_over_long_redundant_stretches_equals_the_sequential_rule():
    """Windows that grow across rejected stretches, blocks of survivors: still the plain rule."""
    g = torch.Generator().manual_seed(7)
    distinct = torch.randn(40, 16, generator=g)
    tokens = distinct[torch.randint(0, 40, (3000,), generator=g)] + 0.2 * torch.randn(3000, 16, generator=g)
    unit = torch.nn.functional.normalize(tokens, dim=-1)
    order = torch.randperm(3000, generator=g)
    for quota, tau in ((30, 0.9), (60, 0.9), (500, 0.99), (3000, 0.5)):
        got = stc.compress.unified_selection(unit, order, quota, tau).tolist()
        assert got == _reference_selection(unit, order, quota, tau), (quota, tau)


@pytest.mark.parametrize("retention", [0.02, 0.1])
def test_stage1_reads_the_host_per_block_of_survivors_not_per_block_of_tokens(retention):
    """32 frames of a drifting scene: stc's stage 1 waits for the device a few times per block of
    selection survivors (7 here; 33 before this rework of unified selection), far fewer than the
    peers, whose counts are taken the same way."""
    from host_reads import HostReads
    from stc.methods import get_method

    features, scores = _video_like(32, 196, 64, seed=0)
    counts = {}
    for name in ("stc", "holitom", "fastvid", "visionzip"):
        config = stc.STCConfig(method=name, retention=retention)
        method = get_method(name)
        with HostReads() as reads:
            method.compress(features, scores, method.counts(config, 32 * 196).stage1, grid=(14, 14), config=config)
        counts[name] = reads.total
    assert counts["stc"] <= 16, counts
    assert all(2 * counts["stc"] < counts[peer] for peer in ("holitom", "fastvid", "visionzip")), counts
