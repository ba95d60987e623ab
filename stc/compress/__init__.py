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
(tests/stage1_reference.py). ``"bf16"`` computes the same squared distances with one bf16
matrix product (fp32 accumulation: AMX on a recent CPU, tensor cores on a GPU) of the centred
tokens, with the squared norms folded into the product so the only rounding of the result is
relative to the distance itself: stage 1 3.0-3.5x faster on a CPU with AMX, 2.1-2.7x on an AMD
EPYC, but 0.6x (slower) on an Intel Xeon without AMX. ``"auto"`` (the default) takes whichever
of the two the device multiplies faster (`stc.compress.pairwise.resolve_distances`: measured
once per process on a CPU, bf16 on a GPU with native bf16). What bf16 changes was measured on
real clips (README, "Stage 1 alone"; `benchmarks/compress_speed.py`): the same explained
variance as "fp32" within 0.002 and 86-100% of the same kept tokens; choices differ only where
distances nearly tie. Unified selection (cosines against tau) stays fp32 in both.

The pairwise pass itself (distances, each token's nearest, the CPU's exact grouped search)
is `stc.compress.pairwise`.

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
from .pairwise import _NEAR, _bands, _chunk_rows, _knn_pass, _knn_pass_linked, _Pairwise, resolve_distances

# The paper's stage-1 hyper-parameters (shared/method.md); STCConfig takes its defaults from here.
DEFAULT_TAU = 0.7
DEFAULT_CLUSTER_RATIO = 0.3
DEFAULT_KNN_K = 7
# Precision of DPC-kNN's pairwise distances (module docstring): "auto" (default: the faster of the
# two on the device, `resolve_distances`), "bf16" or "fp32".
DISTANCES = ("auto", "bf16", "fp32")
DEFAULT_DISTANCES = "auto"
# Frames either side within which DPC-kNN searches a token's neighbours; 0 = all (the paper).
DEFAULT_KNN_WINDOW = 0

# Candidates resolved together by unified selection, and its fixed-point rounds between two
# host reads of "anything left undecided?" (one device sync each on a GPU).
_SELECT_BLOCK = 512
_ROUNDS_PER_CHECK = 4

# An optional relation between tokens: linked(a [r], b [c]) -> bool [r, c], True where the two
# tokens may count as the same content. None (stc, the paper) links every pair; the
# spatiotemporal variant (`stc.compress.st`) links only tokens whose content persisted from
# one to the other.
Linked = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _normalize(x: torch.Tensor) -> torch.Tensor:
    """Row-normalise in fp32 (similarities are always computed in fp32)."""
    return torch.nn.functional.normalize(x.float(), dim=-1)


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


def dpc_knn(
    features: torch.Tensor, num_clusters: int, k: int = 7, linked: Linked | None = None,
    distances: str = DEFAULT_DISTANCES, frame: torch.Tensor | None = None, knn_window: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Density-peak clustering with k-nearest-neighbour density (DPC-kNN).

    features: [m, D] tokens (any float dtype; d = ||x_i - x_j|| / sqrt(D)).
    linked: optional relation over indices into ``features``; an unlinked pair is then farther
        apart than any linked pair: d^2 + Delta^2, with Delta^2 an upper bound of every d^2
        (4 max_i ||x_i||^2 / D), so clusters form within linked tokens first. None: plain d.
    distances: precision of the pairwise distances, "auto", "bf16" or "fp32" (module docstring).
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
    distances = resolve_distances(distances, device)
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
    # The strict total order "denser": higher rho, then lower index; as a rank (a stable sort
    # keeps equal rho in index order), so "j is denser than i" is one comparison.
    rank = torch.empty_like(ar)
    rank[torch.sort(rho, descending=True, stable=True).indices] = ar

    # delta: if a denser token is among i's nearest (the kNN, or the longer list pass 1 kept),
    # the first such is the nearest denser overall (anything closer would be in the list).
    # Only tokens with no denser token in that list need a full row.
    denser_near = rank[near_idx] < rank[:, None]
    has = denser_near.any(dim=1)
    first = denser_near.float().argmax(dim=1)
    delta = near_d2.gather(1, first[:, None]).squeeze(1)
    peaks = torch.nonzero(~has).squeeze(1)
    for s in range(0, peaks.numel(), rows):
        p = peaks[s : s + rows]
        denser = rank[None, :] < rank[p][:, None]
        # Without a relation the row-wise monotone finish comes after the reduction (min/max of
        # the raw values); a relation's penalty needs the finished d^2 first.
        row = pairs.raw(p) if linked is None else separate(pairs.full(p), p, ar)
        nearest = torch.where(denser, row, math.inf).amin(dim=1)
        nearest = torch.where(torch.isinf(nearest), row.amax(dim=1), nearest)
        delta[p] = pairs.finish(nearest, p) if linked is None else nearest
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
    distances: precision of DPC-kNN's pairwise distances, "auto" (default: the faster of the
              two on this device), "bf16" or "fp32" (the arithmetic before issue 26, bit for
              bit); see the module docstring.
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
