"""DPC-kNN's pairwise pass over stage 1's recycle pool: squared distances in bf16 or fp32
(`_Pairwise`; the choice is stc's ``distances`` option, `stc.compress`), and each token's k2
nearest (`_knn_pass`; bounded in time with `_bands`, restricted by a relation in
`_knn_pass_linked`). Pure tensor functions, chunked over rows: memory linear in the tokens.

The neighbour search on a CPU (issue 26, exact). Each row's k2 nearest are found by
`_smallest`: minima of groups of columns first, then a top-k over the few groups that can hold
them: the same values as one top-k over the row, bit for bit, ~2x faster there (torch's CPU
top-k costs per element of long rows); bf16 distances are compared as their int16 bit patterns
(`_Pairwise.keys`, ~3x faster minima). The product writes into one reused buffer and reads b as
one contiguous [width, m] operand; the operands are built a block of rows at a time. A GPU runs
one top-k per row (one fast kernel) on larger chunks.
"""

from __future__ import annotations

import math
import os
import threading
import time

import torch

# Elements of one chunk of a pairwise [rows, cols] matrix (fp32): 16M -> 64 MiB.
_CHUNK_ELEMENTS = 1 << 24
# Nearest neighbours pass 1 keeps per token (>= k): delta then needs a full row only for the
# tokens with no denser token among them. (Measured at 6,271 tokens on a 2-core CPU: 8 makes
# the neighbour pass ~8 ms faster than 16, for ~1 ms more of full rows.)
_NEAR = 8
# Rows of one chunk of DPC-kNN's neighbour pass on a CPU, at most _CHUNK_ELEMENTS values
# (elsewhere: _CHUNK_ELEMENTS' rows). Measured on a 2-core CPU: at 6,271 columns ~670 rows a
# chunk 65 ms, ~1,300 or ~2,700 rows 67-68 ms, ~330 rows 71 ms; at 25,088 columns (128 frames)
# stage 1 takes 1.23 s with 167 rows a chunk, 1.06 s with 334, 0.88 s with 668.
_KNN_ROWS = 672
# Rows per block of the bf16 operands' construction on a CPU (measured: a transposing copy of
# 6,271 x 928 bf16 in blocks of 512 rows takes 1.8 ms, at once 8.8 ms).
_BLOCK_ROWS = 512
# Columns per group of `_smallest` (measured: the neighbour pass at 6,271 tokens, k2 = 8, on a
# 2-core CPU: 55-57 ms with 8, 56-59 with 16, 59-62 with 32, 61-65 with 4).
_GROUP = 8


# "auto" distances (`resolve_distances`): bf16 only where its product is at least this much
# faster than fp32's on the device (a clear win, not the timer's noise).
_AUTO_MARGIN = 1.25
# The product "auto" times on a CPU: a neighbour-pass chunk's kind of operands, [rows, width] x
# [width, cols] (~1.9 GFLOP; the measurement, once per process, took 116 ms on a 2-core Xeon
# without AMX, oneDNN's first call included).
_AUTO_SHAPE = (512, 928, 2048)
_auto_choice: dict[int, str] = {}  # torch's CPU threads -> "bf16" | "fp32"
_auto_lock = threading.Lock()


def _product_seconds(dtype: torch.dtype, shape: tuple[int, int, int] = _AUTO_SHAPE) -> float:
    """Best of three timed CPU products [r, w] x [w, c] of ``dtype`` (after one warm-up)."""
    r, w, c = shape
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(r, w, generator=g).to(dtype), torch.randn(w, c, generator=g).to(dtype)
    out = torch.empty(r, c, dtype=dtype)
    torch.mm(a, b, out=out)
    best = math.inf
    for _ in range(3):
        start = time.perf_counter()
        torch.mm(a, b, out=out)
        best = min(best, time.perf_counter() - start)
    return best


def resolve_distances(distances: str, device: torch.device | str) -> str:
    """The arithmetic ``distances`` means on ``device``: "bf16" or "fp32" as given; "auto" (the
    default) -> "bf16" where the hardware multiplies bf16 faster than fp32, else "fp32".

    Why measured, not assumed: the bf16 pass's speed-up is a property of the chip, not of its
    flags. Measured (README, "Stage 1 alone"): 3.0-3.5x on a CPU with AMX, 2.1-2.7x on an AMD EPYC
    with avx512_bf16, 0.56-0.63x (slower) on an Intel Xeon with avx512_bf16 and no AMX, where
    oneDNN's bf16 kernel runs at ~135 GFLOP/s against MKL's fp32 at ~295. So on a CPU "auto"
    times one product of each (`_product_seconds`, once per process and thread count) and takes
    bf16 if it is at least `_AUTO_MARGIN` times faster. On CUDA: bf16 where the GPU computes it
    natively (tensor cores), else fp32; any other device: fp32. Both arithmetics give the same
    squared distances up to bf16's rounding (`_Pairwise`); pass "fp32" for the arithmetic before
    issue 26 (bit for bit against tests/stage1_reference.py) whatever the machine's speeds.
    The environment variable ``STC_DISTANCES`` ("bf16" or "fp32") fixes what "auto" means in a
    process (to repeat a table measured on other hardware with its arithmetic, through tools
    such as `stc.eval` that take no method options).
    """
    if distances != "auto":
        return distances
    fixed = os.environ.get("STC_DISTANCES", "")
    if fixed:
        if fixed not in ("bf16", "fp32"):
            raise ValueError(f"STC_DISTANCES must be 'bf16' or 'fp32' (what distances='auto' means), got {fixed!r}")
        return fixed
    device = torch.device(device)
    if device.type == "cuda":
        with torch.cuda.device(device):  # the features' GPU, not whichever is current
            return "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp32"
    if device.type != "cpu":
        return "fp32"
    threads = torch.get_num_threads()
    with _auto_lock:  # one measurement at a time: two at once would time each other
        if threads not in _auto_choice:
            fp32 = _product_seconds(torch.float32)
            bf16 = _product_seconds(torch.bfloat16)
            _auto_choice[threads] = "bf16" if bf16 * _AUTO_MARGIN <= fp32 else "fp32"
        return _auto_choice[threads]


def _chunk_rows(cols: int) -> int:
    return max(1, _CHUNK_ELEMENTS // max(1, cols))


def _knn_chunk_rows(m: int, device: torch.device) -> int:
    """Rows of one chunk of the neighbour pass over m columns (`_KNN_ROWS` on a CPU)."""
    return min(_KNN_ROWS, _chunk_rows(m)) if device.type == "cpu" else _chunk_rows(m)


def _smallest(values: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k smallest entries of each row of values [r, c] (k <= c), ascending: (values [r, k],
    column indices [r, k]). The same values as ``torch.topk(values, k, largest=False,
    sorted=True)``, bit for bit; among equal values any columns may be returned.

    On a CPU (elsewhere: torch.topk). Why it is exact: split a row's columns into groups and
    take each group's minimum. Every entry smaller than t, the k-th smallest of those minima,
    lies in a group whose minimum is below t, so in one of the k groups with the smallest
    minima; and those k groups hold k entries <= t. Their union (with the columns no group
    covers) therefore holds k smallest entries of the row. The minima are an elementwise min of
    g contiguous column slices, and the selection then runs over ~c / g minima and k x g
    candidates: ~2x faster than one top-k over long rows on a CPU (torch's top-k costs per
    element, the min is a vectorised pass); applied again to the minima when they are many.
    """
    r, c = values.shape
    groups = c // _GROUP
    if groups < 4 * k or values.device.type != "cpu":  # (a GPU's top-k is one fast kernel)
        return torch.topk(values, k, dim=1, largest=False, sorted=True)
    covered = groups * _GROUP
    # group j: columns j, j + groups, ..., j + (_GROUP - 1) * groups
    minima = values[:, :covered].unflatten(1, (_GROUP, groups)).amin(dim=1)
    chosen = _smallest(minima, k)[1]  # [r, k]
    step = torch.arange(0, covered, groups, device=values.device)
    cols = (chosen[:, :, None] + step).flatten(1)  # [r, k * _GROUP]
    if covered < c:
        cols = torch.cat([cols, torch.arange(covered, c, device=values.device).expand(r, -1)], dim=1)
    best, at = torch.topk(values.gather(1, cols), k, dim=1, largest=False, sorted=True)
    return best, cols.gather(1, at)


def _sq_dists(a: torch.Tensor, b: torch.Tensor, scale: float) -> torch.Tensor:
    """Squared Euclidean distances / D between rows of a [r, D] and b [c, D], fp32, >= 0."""
    d = torch.addmm((b * b).sum(1)[None, :].expand(a.shape[0], -1), a, b.T, alpha=-2.0)
    return d.add_((a * a).sum(1, keepdim=True)).clamp_min_(0.0).mul_(scale)


class _Pairwise:
    """Squared distances / D between the rows of x [m, D], one chunk of rows at a time.

    ``raw(rows)`` -> [r, m] values in the order of d^2 along each row (what top-k, min and max
    need); ``finish(values, rows)`` turns values taken from those rows into d^2 / D (fp32, >= 0).
    ``full(rows)`` is both. ``rows`` is a slice or an index tensor.

    "fp32": raw = ||x_j||^2 - 2 x_i.x_j (one addmm), finish adds ||x_i||^2: stc's arithmetic
    before issue 26, bit for bit. "bf16": raw = d^2 itself, from ONE bf16 product of
    a_i = [x_i, s_i, s_i', 1, 1] and b_j = [-2 x_j, 1, 1, s_j, s_j'] (x centred and rounded to
    bf16 once, s + s' its squared norm split into two bf16 parts), accumulated in fp32 and
    rounded once: every value carries a rounding relative to d^2, not to ||x||^2. (Which of two
    nearly equal sums rounds which way depends on the kernel's order of accumulation: the
    contract is the error bound, tests/test_compress.py, not the last bit.)
    """

    def __init__(self, x: torch.Tensor, distances: str):
        self.scale = 1.0 / x.shape[1]
        self.distances = distances
        m, dim = x.shape
        if distances == "fp32":
            self.x = x
            self.sq = (x * x).sum(1)
            self._bound = 4.0 * self.sq.max() * self.scale  # a 0-d tensor: read only if asked
            return
        width = -(-(dim + 4) // 32) * 32  # whole AMX / tensor-core tiles (measured: 928 beats 900 or 912)
        # a [m, width] and b's transpose, the contiguous [width, m] operand the product reads ~1.4x
        # faster than a transposed view on a CPU (measured: README, "Stage 1 alone")
        self.a = a = x.new_empty(m, width, dtype=torch.bfloat16)
        self.bt = bt = x.new_empty(width, m, dtype=torch.bfloat16)
        xr, mean, sq = a[:, :dim], x.mean(dim=0), x.new_empty(m)
        # a block of rows at a time on a CPU (no [m, D] fp32 temporary; the transposing copy ~4x
        # faster than one of the whole): centred in fp32, rounded to bf16 once; its squared
        # norm; -2 x (exact) as b's columns
        step = _BLOCK_ROWS if x.device.type == "cpu" else m
        for s in range(0, m, step):
            rows = slice(s, s + step)
            xr[rows] = x[rows] - mean
            torch.linalg.vector_norm(xr[rows], dim=1, dtype=torch.float32, out=sq[rows])
            bt[:dim, rows].copy_(xr[rows].T).mul_(-2.0)
        sq.square_()
        a[:, dim] = sq
        a[:, dim + 1] = sq - a[:, dim].float()
        a[:, dim + 2 : dim + 4] = 1.0
        a[:, dim + 4 :] = 0.0
        bt[dim : dim + 2] = 1.0
        bt[dim + 2 : dim + 4] = a[:, dim : dim + 2].T
        bt[dim + 4 :] = 0.0
        # every d^2 of the centred tokens is at most 4 max ||x||^2; 5% covers the rounding
        self._bound = 4.2 * sq.max() * self.scale

    @property
    def bound(self) -> float:
        """An upper bound of every d^2 / D (a host read: only a relation's penalty needs it)."""
        return float(self._bound)

    @property
    def device(self) -> torch.device:
        return self.x.device if self.distances == "fp32" else self.a.device

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of ``raw``'s values."""
        return torch.float32 if self.distances == "fp32" else torch.bfloat16

    def raw(self, rows, cols=slice(None), out: torch.Tensor | None = None) -> torch.Tensor:
        """out: None, or a contiguous [r, c] tensor of ``dtype`` to write the values into."""
        if self.distances == "fp32":
            x, y = self.x[rows], self.x[cols]
            return torch.addmm(self.sq[cols][None, :].expand(x.shape[0], -1), x, y.T, alpha=-2.0, out=out)
        return torch.mm(self.a[rows], self.bt[:, cols], out=out)

    def finish(self, values: torch.Tensor, rows) -> torch.Tensor:
        if self.distances == "fp32":
            sq = self.sq[rows]
            return values.add_(sq if values.dim() == 1 else sq[:, None]).clamp_min_(0.0).mul_(self.scale)
        return values.float().clamp_min_(0.0).mul_(self.scale)

    def keys(self, raw: torch.Tensor) -> torch.Tensor:
        """raw's values as keys whose k smallest in a row are k smallest of its ``finish``ed
        values: "bf16" -> their bits viewed as int16 (integer minima and top-k are ~3x faster
        than bf16 ones on a CPU; measured at 668 x 6,271, one thread). Non-negative bf16 values
        order as their bit patterns; a negative one (a d^2 rounded below 0) has the sign bit
        set, so it sorts below all of them (in reverse order among negatives), and finish maps
        every negative to 0. "fp32": raw itself."""
        return raw if self.distances == "fp32" else raw.view(torch.int16)

    def from_keys(self, keys: torch.Tensor, rows) -> torch.Tensor:
        """``finish`` of the raw values some keys stand for."""
        return self.finish(keys if self.distances == "fp32" else keys.view(torch.bfloat16), rows)

    def full(self, rows, cols=slice(None)) -> torch.Tensor:
        return self.finish(self.raw(rows, cols), rows)


def _knn_pass(pairs: _Pairwise, m: int, k: int, bands=None):
    """Pass 1 of DPC-kNN: every row's ``k`` nearest (sorted, self excluded) and a longer list.

    Returns (knn_d2 [m, k], knn_idx [m, k], near_d2 [m, k2], near_idx [m, k2]) with
    k2 = min(m - 1, max(k, _NEAR)) and d2 = ||x_i - x_j||^2 / D: the search runs on the raw
    values (as `_Pairwise.keys`), and the row-wise monotone rest is applied to the k2 values
    kept only (the same values, the same order; no full-matrix pass). The longer list lets
    delta skip most full rows.
    bands: None (every row against every column) or [(r0, r1, c0, c1)]: rows r0..r1-1 are
    searched among columns c0..c1-1 only (each band holding more than k2 columns).
    """
    k2 = min(m - 1, max(k, _NEAR))
    if bands is None:
        rows = _knn_chunk_rows(m, pairs.device)
        bands = [(s, min(s + rows, m), 0, m) for s in range(0, m, rows)]
    # one buffer for every chunk: a fresh allocation per chunk costs page faults on a CPU
    size = max((r1 - r0) * (c1 - c0) for r0, r1, c0, c1 in bands)
    buffer = torch.empty(size, dtype=pairs.dtype, device=pairs.device)
    near_d2, near_idx = [], []
    for r0, r1, c0, c1 in bands:
        raw = pairs.raw(slice(r0, r1), slice(c0, c1), out=buffer[: (r1 - r0) * (c1 - c0)].view(r1 - r0, c1 - c0))
        raw.diagonal(offset=r0 - c0).fill_(math.inf)  # self
        values, idx = _smallest(pairs.keys(raw), k2)
        near_d2.append(pairs.from_keys(values, slice(r0, r1)))
        near_idx.append(idx.add_(c0))
    near_d2, near_idx = torch.cat(near_d2), torch.cat(near_idx)
    return near_d2[:, :k], near_idx[:, :k], near_d2, near_idx


def _bands(frame: torch.Tensor, window: int, k2: int):
    """Row/column ranges of a kNN pass bounded in time: the tokens of each group of frames
    against the tokens within ``window`` frames of the group. frame: [m] ascending frame index
    of each token. None when some band would be too small or every band spans every column
    (then every row sees every column)."""
    m = frame.numel()
    counts = torch.bincount(frame).tolist()  # one host read
    starts = [0]
    for c in counts:
        starts.append(starts[-1] + c)
    t = len(counts)
    per = 1  # one frame of rows per band: each token sees exactly the frames within window of its own
    bands = []
    for f0 in range(0, t, per):
        f1 = min(f0 + per, t)
        r0, r1 = starts[f0], starts[f1]
        c0, c1 = starts[max(0, f0 - window)], starts[min(t, f1 + window)]
        if r1 == r0:
            continue
        if c1 - c0 <= k2:
            return None
        bands.append((r0, r1, c0, c1))
    if all(c0 == 0 and c1 == m for _, _, c0, c1 in bands):
        return None  # the window spans the video: the unbounded pass, the same arithmetic
    return bands


def _knn_pass_linked(pairs: _Pairwise, m: int, k: int, separate):
    """Pass 1 with a relation (`stc.compress.st`): full transformed rows, as before issue 26."""
    device = pairs.device
    ar = torch.arange(m, device=device)
    knn_d2 = torch.empty(m, k, device=device)
    knn_idx = torch.empty(m, k, dtype=torch.long, device=device)
    rows = _chunk_rows(m)
    for s in range(0, m, rows):
        d2 = separate(pairs.full(slice(s, s + rows)), ar[s : s + rows], ar)
        r = torch.arange(d2.shape[0], device=device)
        d2[r, ar[s : s + rows]] = math.inf
        knn_d2[s : s + rows], knn_idx[s : s + rows] = _smallest(d2, k)
    return knn_d2, knn_idx
