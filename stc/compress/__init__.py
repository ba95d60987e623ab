"""Stage 1 of stc: unified spatiotemporal compression (shared/method.md, "Stage 1").

All T x N visual tokens of a video form ONE pool. Tokens are visited in descending contribution
score; a token joins the retention pool if it is not too similar (cosine < tau) to any token
already there. Everything else is the recycle pool, which DPC-kNN clusters into the rest of the
budget; each cluster is "refilled" as the mean of its members at the position of its centre.

Pure tensor functions, no model code. Everything runs on the tensors' device; the only host
reads are a few per block of selection survivors (to stop early) and the count of DPC-kNN's
density peaks (tests/test_compress.py counts them). Pairwise work is
chunked so peak memory grows linearly with the number of tokens, never with its square.

Distances (``distances``, issue 26). DPC-kNN's pairwise pass over the recycle pool (~6,200 tokens
at 32 frames: 6,200^2 x D multiply-adds) is most of stage 1's time. ``"fp32"`` computes it in
fp32 from the tokens as given: the arithmetic of stc before issue 26, bit for bit
(tests/stage1_reference.py). ``"bf16"`` (the default) computes the same squared distances with
one bf16 matrix product (fp32 accumulation: AMX on a recent CPU, tensor cores on a GPU) of the
centred tokens, with the squared norms folded into the product so the only rounding of the
result is relative to the distance itself: the pass is ~4x faster on a CPU with AMX, stage 1
2.3-2.6x. What it changes was measured on real clips (README, "Stage 1 alone";
`benchmarks/compress_speed.py`): the same explained variance as "fp32" within 0.002 and 86-100%
of the same kept tokens; choices differ only where distances nearly tie. Unified selection
(cosines against tau) stays fp32 in both.

The neighbour search on a CPU (issue 26, exact). Each row's k2 nearest are found by
`_smallest`: minima of groups of columns first, then a top-k over the few groups that can hold
them: the same values as one top-k over the row, bit for bit, ~2x faster there (torch's CPU
top-k costs per element of long rows). The product writes into one reused buffer and reads b as
one contiguous [width, m] operand; the operands are built a block of rows at a time. A GPU runs
one top-k per row (one fast kernel) on larger chunks.

Bounded neighbours (``knn_window``, opt-in). With w > 0 the k nearest neighbours (density) and
the short list delta reads first are searched only among tokens within w frames; a token with
no denser token there still gets its delta from the whole pool, the centres are still the top
gamma of the whole pool and every token still joins its nearest centre anywhere. It cuts the
pairwise work to about (2w + 1) / T of it, and changes what is kept: measured in the README
("Stage 1 alone"), which is why the default stays the paper's global search (0).
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from ..arith import round_half_up, segment_mean
from ..results import Compressed

# The paper's stage-1 hyper-parameters (shared/method.md); STCConfig takes its defaults from here.
DEFAULT_TAU = 0.7
DEFAULT_CLUSTER_RATIO = 0.3
DEFAULT_KNN_K = 7
# Precision of DPC-kNN's pairwise distances (module docstring): "bf16" (default) or "fp32".
DISTANCES = ("bf16", "fp32")
DEFAULT_DISTANCES = "bf16"
# Frames either side within which DPC-kNN searches a token's neighbours; 0 = all (the paper).
DEFAULT_KNN_WINDOW = 0

# Elements of one chunk of a pairwise [rows, cols] matrix (fp32): 16M -> 64 MiB.
_CHUNK_ELEMENTS = 1 << 24
# Candidates resolved together by unified selection, and its fixed-point rounds between two
# host reads of "anything left undecided?" (one device sync each on a GPU).
_SELECT_BLOCK = 512
_ROUNDS_PER_CHECK = 4
# Nearest neighbours pass 1 keeps per token (>= k): delta then needs a full row only for the
# tokens with no denser token among them. (Measured at 6,271 tokens on a 2-core CPU: 8 makes
# the neighbour pass ~8 ms faster than 16, for ~1 ms more of full rows.)
_NEAR = 8
# Elements of one chunk of DPC-kNN's neighbour pass on a CPU (bf16: 8 MiB; elsewhere
# _CHUNK_ELEMENTS). Measured on a 2-core CPU at 6,271 columns: ~670 rows a chunk 65 ms, ~1,300
# or ~2,700 rows 67-68 ms, ~330 rows 71 ms.
_KNN_CHUNK_ELEMENTS = 1 << 22
# Rows per block of the bf16 operands' construction on a CPU (measured: a transposing copy of
# 6,271 x 928 bf16 in blocks of 512 rows takes 1.8 ms, at once 8.8 ms).
_BLOCK_ROWS = 512
# Columns per group of `_smallest` (measured: the neighbour pass at 6,271 tokens, k2 = 8, on a
# 2-core CPU: 55-57 ms with 8, 56-59 with 16, 59-62 with 32, 61-65 with 4).
_GROUP = 8

# An optional relation between tokens: linked(a [r], b [c]) -> bool [r, c], True where the two
# tokens may count as the same content. None (stc, the paper) links every pair; the
# spatiotemporal variant (`stc.compress.st`) links only tokens whose content persisted from
# one to the other.
Linked = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _normalize(x: torch.Tensor) -> torch.Tensor:
    """Row-normalise in fp32 (similarities are always computed in fp32)."""
    return torch.nn.functional.normalize(x.float(), dim=-1)


def _chunk_rows(cols: int) -> int:
    return max(1, _CHUNK_ELEMENTS // max(1, cols))


def _smallest(values: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k smallest entries of each row of values [r, c] (k <= c), ascending: (values [r, k],
    column indices [r, k]). The same values as ``torch.topk(values, k, largest=False,
    sorted=True)``, bit for bit; among equal values any columns may be returned.

    On a CPU only (elsewhere: torch.topk). Why it is exact: split a row's columns into groups and take each group's minimum. Every
    entry smaller than t, the k-th smallest of those minima, lies in a group whose minimum is
    below t, so in one of the k groups with the smallest minima; and those k groups hold k
    entries <= t. Their union (with the columns no group covers) therefore holds k smallest
    entries of the row. A group's minimum is an elementwise min of g contiguous column
    slices, and the selection then runs over ~c / g minima and k x g candidates: ~2x faster
    than one top-k over long rows on a CPU (torch's top-k costs per element, the min is a
    vectorised pass), applied again to the minima when they are many.
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


def _rejected(unit: torch.Tensor, cand: torch.Tensor, pool_unit: torch.Tensor, pool_idx: torch.Tensor, tau: float,
              linked: Linked | None) -> torch.Tensor:
    """[c] bool: candidate cand[i] is too similar (cos >= tau, and linked if a relation is given)
    to one of the pooled tokens pool_unit [p, D] (indices pool_idx). Chunked over candidates."""
    rows = _chunk_rows(max(pool_unit.shape[0], unit.shape[1]))  # the [rows, D] gather is one chunk too
    out = []
    for s in range(0, cand.numel(), rows):
        c = cand[s : s + rows]
        close = (unit[c] @ pool_unit.T) >= tau
        if linked is not None:
            close &= linked(c, pool_idx)
        out.append(close.any(dim=1))
    return torch.cat(out)


def unified_selection(
    unit: torch.Tensor, order: torch.Tensor, quota: int, tau: float, linked: Linked | None = None
) -> torch.Tensor:
    """Greedy similarity-constrained selection over the global token pool.

    unit:  [M, D] fp32 unit-norm features.
    order: [M] visiting order (descending contribution score).
    linked: optional relation over indices into ``unit``; a pooled token p then rejects c only
        if cos(c, p) >= tau AND linked(c, p). None: every pair (the paper's rule).
    Returns the indices [P] (P <= quota) of the retention pool, in visiting order: the first
    ``quota`` candidates c with max_{p in pool} cos(c, p) < tau (over the linked p).

    Candidates are read in windows of the visiting order, each filtered at once against the
    pool (a rejected candidate can never be kept, nor block a later one); a window that yields
    few survivors doubles the next one, so a long redundant stretch costs a few host reads, not
    one per block. Blocks of survivors are then resolved against themselves: the sequential rule
    "c is kept iff no earlier kept candidate conflicts with it" is solved by fixed-point rounds
    over the block's conflict graph, which decide at least the first undecided candidate each
    round and usually all of them in a handful; survivors left for a later block are filtered
    against what the block added. The result is exactly the sequential greedy one.
    """
    device = unit.device
    if quota <= 0:
        return torch.empty(0, dtype=torch.long, device=device)
    pool_parts: list[torch.Tensor] = []
    pool_unit = unit.new_empty(0, unit.shape[1])
    pool_idx = order.new_empty(0)
    survivors = order.new_empty(0)  # filtered against the whole pool, not yet resolved
    read, window, taken = 0, _SELECT_BLOCK, 0
    while taken < quota:
        while survivors.numel() < _SELECT_BLOCK // 2 and read < order.numel():
            cand = order[read : read + window]
            read += cand.numel()
            if pool_idx.numel():
                cand = cand[~_rejected(unit, cand, pool_unit, pool_idx, tau, linked)]
            # grow the window across stretches the pool rejects; back to one block otherwise
            window = 2 * window if cand.numel() < _SELECT_BLOCK // 2 else _SELECT_BLOCK
            survivors = torch.cat([survivors, cand])
        if survivors.numel() == 0:
            break
        idx, survivors = survivors[:_SELECT_BLOCK], survivors[_SELECT_BLOCK:]
        block = unit[idx]  # [b, D]
        b = idx.numel()
        # conflict[i, j]: earlier candidate j (j < i) is too similar to i.
        conflict = torch.tril((block @ block.T) >= tau, diagonal=-1)
        if linked is not None:
            conflict &= linked(idx, idx)
        kept = torch.zeros(b, dtype=torch.bool, device=device)
        undecided = torch.ones(b, dtype=torch.bool, device=device)
        for round_ in range(b):
            # (a host read every few rounds, none before the first: extra rounds after the fixed
            # point change nothing)
            if round_ and round_ % _ROUNDS_PER_CHECK == 0 and not bool(undecided.any()):
                break
            # Earlier neighbours that are kept or still undecided block a decision to keep.
            pending = (conflict & (kept | undecided)[None, :]).any(dim=1)
            kept |= undecided & ~pending
            undecided &= ~kept & ~(conflict & kept[None, :]).any(dim=1)
        new = idx[kept]
        room = quota - taken
        if new.numel() >= room:
            pool_parts.append(new[:room])
            taken = quota
            break
        pool_parts.append(new)
        taken += new.numel()
        if new.numel():
            pool_unit, pool_idx = torch.cat([pool_unit, unit[new]]), torch.cat([pool_idx, new])
            if survivors.numel():
                survivors = survivors[~_rejected(unit, survivors, unit[new], new, tau, linked)]
    return torch.cat(pool_parts) if pool_parts else torch.empty(0, dtype=torch.long, device=device)


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

    def full(self, rows, cols=slice(None)) -> torch.Tensor:
        return self.finish(self.raw(rows, cols), rows)


def _knn_pass(pairs: _Pairwise, m: int, k: int, bands=None):
    """Pass 1 of DPC-kNN: every row's ``k`` nearest (sorted, self excluded) and a longer list.

    Returns (knn_d2 [m, k], knn_idx [m, k], near_d2 [m, k2], near_idx [m, k2]) with
    k2 = min(m - 1, max(k, _NEAR)) and d2 = ||x_i - x_j||^2 / D: the top-k runs on the raw
    values, and the row-wise monotone rest is applied to the k2 values kept only (the same
    values, the same order; no full-matrix pass). The longer list lets delta skip most full rows.
    bands: None (every row against every column) or [(r0, r1, c0, c1)]: rows r0..r1-1 are
    searched among columns c0..c1-1 only (each band holding more than k2 columns).
    """
    k2 = min(m - 1, max(k, _NEAR))
    if bands is None:
        rows = max(1, (_KNN_CHUNK_ELEMENTS if pairs.device.type == "cpu" else _CHUNK_ELEMENTS) // m)
        bands = [(s, min(s + rows, m), 0, m) for s in range(0, m, rows)]
    # one buffer for every chunk: a fresh allocation per chunk costs page faults on a CPU
    size = max((r1 - r0) * (c1 - c0) for r0, r1, c0, c1 in bands)
    buffer = torch.empty(size, dtype=pairs.dtype, device=pairs.device)
    near_d2, near_idx = [], []
    for r0, r1, c0, c1 in bands:
        raw = pairs.raw(slice(r0, r1), slice(c0, c1), out=buffer[: (r1 - r0) * (c1 - c0)].view(r1 - r0, c1 - c0))
        raw.diagonal(offset=r0 - c0).fill_(math.inf)  # self
        values, idx = _smallest(raw, k2)
        near_d2.append(pairs.finish(values, slice(r0, r1)))
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


def dpc_knn(
    features: torch.Tensor, num_clusters: int, k: int = 7, linked: Linked | None = None,
    distances: str = DEFAULT_DISTANCES, frame: torch.Tensor | None = None, knn_window: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Density-peak clustering with k-nearest-neighbour density (DPC-kNN).

    features: [m, D] tokens (any float dtype; d = ||x_i - x_j|| / sqrt(D)).
    linked: optional relation over indices into ``features``; an unlinked pair is then farther
        apart than any linked pair: d^2 + Delta^2, with Delta^2 an upper bound of every d^2
        (4 max_i ||x_i||^2 / D), so clusters form within linked tokens first. None: plain d.
    distances: precision of the pairwise distances, "bf16" or "fp32" (module docstring).
    frame, knn_window: with knn_window > 0 and frame [m] (each token's frame, ascending), the
        k nearest neighbours (and the short list delta reads first) are searched only among
        tokens within knn_window frames: an approximation (module docstring). 0: everywhere.
    Returns (centres [c] indices into features in descending gamma order, labels [m] in [0, c)).

    rho_i = exp(-mean_{j in kNN(i)} d_ij^2) with kNN(i) excluding i; delta_i = distance to the
    nearest denser token (ties in rho broken by index: a lower index counts as denser), or the
    largest distance from i for the densest token; centres = top-c of rho * delta; every token
    joins its nearest centre, and each centre its own cluster. Work is chunked over rows.
    """
    if distances not in DISTANCES:
        raise ValueError(f"distances must be one of {', '.join(map(repr, DISTANCES))}, got {distances!r}")
    m = features.shape[0]
    device = features.device
    c = max(0, min(num_clusters, m))
    if c == 0:
        return torch.empty(0, dtype=torch.long, device=device), torch.full((m,), -1, dtype=torch.long, device=device)
    if m == 1:
        zero = torch.zeros(1, dtype=torch.long, device=device)
        return zero, zero.clone()
    x = features.float()
    scale = 1.0 / x.shape[1]
    k_eff = min(k, m - 1)
    ar = torch.arange(m, device=device)
    rows = _chunk_rows(m)
    pairs = _Pairwise(x, distances)
    # Unlinked pairs (if a relation is given) are pushed past every squared distance.
    penalty = 0.0 if linked is None else pairs.bound

    def separate(d2: torch.Tensor, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        return d2 if linked is None else d2.add_((~linked(i, j)).float(), alpha=penalty)

    if linked is None:
        bands = None if knn_window <= 0 or frame is None else _bands(frame, knn_window, min(m - 1, max(k_eff, _NEAR)))
        knn_d2, knn_idx, near_d2, near_idx = _knn_pass(pairs, m, k_eff, bands)
    else:
        knn_d2, knn_idx = _knn_pass_linked(pairs, m, k_eff, separate)
        near_d2, near_idx = knn_d2, knn_idx
    rho = torch.exp(-knn_d2.mean(dim=1))

    def is_denser(j: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        # strict total order: higher rho, then lower index
        return (rho[j] > rho[i]) | ((rho[j] == rho[i]) & (j < i))

    # delta: if a denser token is among i's nearest (the kNN, or the longer list pass 1 kept),
    # the first such is the nearest denser overall (anything closer would be in the list).
    # Only tokens with no denser token in that list need a full row.
    denser_near = is_denser(near_idx, ar[:, None])
    has = denser_near.any(dim=1)
    first = denser_near.float().argmax(dim=1)
    delta = near_d2.gather(1, first[:, None]).squeeze(1)
    peaks = torch.nonzero(~has).squeeze(1)
    for s in range(0, peaks.numel(), rows):
        p = peaks[s : s + rows]
        denser = is_denser(ar[None, :], p[:, None])
        if linked is None:
            # Row-wise monotone transform after the reduction: min/max of the raw values.
            raw = pairs.raw(p)
            nearest = raw.masked_fill(~denser, math.inf).amin(dim=1)
            nearest = torch.where(torch.isinf(nearest), raw.amax(dim=1), nearest)
            delta[p] = pairs.finish(nearest, p)
        else:
            d2 = separate(pairs.full(p), p, ar)
            nearest = d2.masked_fill(~denser, math.inf).amin(dim=1)
            delta[p] = torch.where(torch.isinf(nearest), d2.amax(dim=1), nearest)
    delta = delta.sqrt()

    gamma = rho * delta
    centres = torch.sort(gamma, descending=True, stable=True).indices[:c]

    labels = torch.empty(m, dtype=torch.long, device=device)
    for s in range(0, m, _chunk_rows(c)):
        d2 = pairs.full(slice(s, s + _chunk_rows(c)), centres)
        labels[s : s + _chunk_rows(c)] = separate(d2, ar[s : s + _chunk_rows(c)], centres).argmin(dim=1)
    labels[centres] = torch.arange(c, device=device)
    return centres, labels


@torch.no_grad()
def compress_tokens(
    features: torch.Tensor,
    scores: torch.Tensor,
    budget: int,
    *,
    tau: float = DEFAULT_TAU,
    cluster_ratio: float = DEFAULT_CLUSTER_RATIO,
    knn_k: int = DEFAULT_KNN_K,
    linked: Linked | None = None,
    distances: str = DEFAULT_DISTANCES,
    knn_window: int = DEFAULT_KNN_WINDOW,
) -> Compressed:
    """Compress a video's visual tokens to exactly ``budget`` tokens (stc stage 1).

    features: [T, N, D] projected visual tokens (fp32 / fp16 / bf16, any device).
    scores:   [T, N] contribution of every token (higher = more important).
    budget:   B, 1 <= B <= T*N.
    linked:   optional relation over flat indices (frame-major, into T*N) that restricts both
              the redundancy test and the clustering (see `unified_selection`, `dpc_knn`);
              None is the paper's method.
    distances: precision of DPC-kNN's pairwise distances, "bf16" (default) or "fp32" (the
              arithmetic before issue 26, bit for bit); see the module docstring.
    knn_window: 0 (default, the paper): DPC-kNN's neighbours are searched over the whole
              recycle pool; w > 0: only within w frames of each token (faster, approximate;
              module docstring). Not with ``linked``.
    Returns a :class:`Compressed` with B tokens in original order.

    Selection quota = B - round(cluster_ratio * B); the rest of the budget (and whatever unified
    selection could not fill) goes to DPC-kNN clusters of the recycle pool.
    """
    if features.dim() != 3:
        raise ValueError(f"features must be [T, N, D], got shape {tuple(features.shape)}")
    t, n, dim = features.shape
    total = t * n
    if tuple(scores.shape) != (t, n):
        raise ValueError(f"scores must be [T, N] = {[t, n]}, got shape {tuple(scores.shape)}")
    if isinstance(budget, bool) or not isinstance(budget, int) or not 1 <= budget <= total:
        raise ValueError(f"budget must be an integer in [1, {total}] (T*N), got {budget!r}")
    if isinstance(knn_window, bool) or not isinstance(knn_window, int) or knn_window < 0:
        raise ValueError(f"knn_window must be an integer >= 0 (0: no bound), got {knn_window!r}")
    if knn_window and linked is not None:
        raise ValueError("knn_window bounds stc's own DPC-kNN; it does not combine with a relation (linked)")
    device = features.device
    flat = features.reshape(total, dim)
    if budget == total:
        ar = torch.arange(total, device=device)
        return Compressed(flat.clone(), ar, ar.clone(), torch.ones(total, dtype=torch.bool, device=device))

    quota = budget - round_half_up(cluster_ratio * budget)
    order = torch.sort(scores.reshape(total).float(), descending=True, stable=True).indices
    pool = unified_selection(_normalize(flat), order, quota, tau, linked)

    in_pool = torch.zeros(total, dtype=torch.bool, device=device)
    in_pool[pool] = True
    # ascending flat index of the rest (a stable sort puts False first: no host read, P is known)
    recycle = torch.sort(in_pool.to(torch.uint8), stable=True).indices[: total - pool.numel()]
    local = None if linked is None else (lambda a, b: linked(recycle[a], recycle[b]))
    recycled = flat[recycle]
    centres, labels = dpc_knn(recycled, budget - pool.numel(), knn_k, local, distances, recycle // n, knn_window)
    num_clusters = centres.numel()

    # Output slots: the pooled tokens and the cluster centres, in original order.
    source = torch.cat([pool, recycle[centres]])
    selected = torch.cat(
        [torch.ones(pool.numel(), dtype=torch.bool, device=device), torch.zeros(num_clusters, dtype=torch.bool, device=device)]
    )
    source, perm = torch.sort(source)
    selected = selected[perm]
    slot_of = torch.empty_like(perm)
    slot_of[perm] = torch.arange(perm.numel(), device=device)  # position in `source` of pre-sort entry

    assignment = torch.full((total,), -1, dtype=torch.long, device=device)
    assignment[pool] = slot_of[: pool.numel()]
    if num_clusters:
        assignment[recycle] = slot_of[pool.numel() + labels]
        refilled = segment_mean(recycled, labels, num_clusters)
    else:
        refilled = flat.new_empty(0, dim)

    tokens = torch.cat([flat[pool], refilled])[perm]
    return Compressed(tokens=tokens, source=source, assignment=assignment, selected=selected)
