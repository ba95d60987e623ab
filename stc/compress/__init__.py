"""Stage 1 of stc: unified spatiotemporal compression (shared/method.md, "Stage 1").

All T x N visual tokens of a video form ONE pool. Tokens are visited in descending contribution
score; a token joins the retention pool if it is not too similar (cosine < tau) to any token
already there. Everything else is the recycle pool, which DPC-kNN clusters into the rest of the
budget; each cluster is "refilled" as the mean of its members at the position of its centre.

Pure tensor functions, no model code. Everything runs on the tensors' device; the only host
syncs are one scalar per block of candidates (to stop early) and loop bounds. Pairwise work is
chunked so peak memory grows linearly with the number of tokens, never with its square.
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

# Elements of one chunk of a pairwise [rows, cols] matrix (fp32): 16M -> 64 MiB.
_CHUNK_ELEMENTS = 1 << 24
# Candidates resolved together by unified selection.
_SELECT_BLOCK = 512
# Nearest neighbours pass 1 keeps per token (>= k): delta then needs a full row only for the
# tokens with no denser token among them.
_NEAR = 16

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

    Candidates are resolved in blocks. Inside a block the sequential rule "c is kept iff no
    earlier kept candidate conflicts with it" is solved by fixed-point rounds over the block's
    conflict graph, which decide at least the first undecided candidate each round and usually
    all of them in a handful; the result is exactly the sequential greedy one.
    """
    device = unit.device
    if quota <= 0:
        return torch.empty(0, dtype=torch.long, device=device)
    pool_parts: list[torch.Tensor] = []
    pool_unit = unit.new_empty(0, unit.shape[1])
    pool_idx = order.new_empty(0)
    taken = 0
    for start in range(0, order.numel(), _SELECT_BLOCK):
        idx = order[start : start + _SELECT_BLOCK]
        block = unit[idx]  # [b, D]
        b = idx.numel()
        if pool_unit.shape[0] and linked is None:
            alive = (block @ pool_unit.T).amax(dim=1) < tau
        elif pool_unit.shape[0]:
            alive = ~(((block @ pool_unit.T) >= tau) & linked(idx, pool_idx)).any(dim=1)
        else:
            alive = torch.ones(b, dtype=torch.bool, device=device)
        # conflict[i, j]: earlier candidate j (j < i) is too similar to i.
        conflict = torch.tril((block @ block.T) >= tau, diagonal=-1)
        if linked is not None:
            conflict &= linked(idx, idx)
        kept = torch.zeros(b, dtype=torch.bool, device=device)
        undecided = alive.clone()
        for _ in range(b):
            if not bool(undecided.any()):
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
        pool_unit = torch.cat([pool_unit, unit[new]])
        if linked is not None:
            pool_idx = torch.cat([pool_idx, new])
    return torch.cat(pool_parts) if pool_parts else torch.empty(0, dtype=torch.long, device=device)


def _sq_dists(a: torch.Tensor, b: torch.Tensor, scale: float) -> torch.Tensor:
    """Squared Euclidean distances / D between rows of a [r, D] and b [c, D], fp32, >= 0."""
    d = torch.addmm((b * b).sum(1)[None, :].expand(a.shape[0], -1), a, b.T, alpha=-2.0)
    return d.add_((a * a).sum(1, keepdim=True)).clamp_min_(0.0).mul_(scale)


def _knn_pass(x: torch.Tensor, k: int, scale: float):
    """Pass 1 of DPC-kNN: every row's ``k`` nearest (sorted, self excluded) and a longer list.

    Returns (knn_d2 [m, k], knn_idx [m, k], near_d2 [m, k2], near_idx [m, k2], sq [m]) with
    k2 = min(m - 1, max(k, _NEAR)) and d2 = ||x_i - x_j||^2 / D exactly as `_sq_dists` computes
    it: the top-k runs on the raw addmm values sq_j - 2 x_i.x_j, and the row-wise monotone rest
    (+ sq_i, clamp at 0, / D) is applied to the k2 values kept only (the same values, the same
    order; the full-matrix passes are skipped). The longer list lets delta skip most full rows.
    """
    m = x.shape[0]
    device = x.device
    k2 = min(m - 1, max(k, _NEAR))
    sq = (x * x).sum(1)
    near_raw = torch.empty(m, k2, device=device)
    near_idx = torch.empty(m, k2, dtype=torch.long, device=device)
    rows = _chunk_rows(m)
    for s in range(0, m, rows):
        e = min(s + rows, m)
        raw = torch.addmm(sq[None, :].expand(e - s, -1), x[s:e], x.T, alpha=-2.0)
        raw.diagonal(offset=s).fill_(math.inf)  # self
        near_raw[s:e], near_idx[s:e] = torch.topk(raw, k2, dim=1, largest=False, sorted=True)
    near_d2 = near_raw.add_(sq[:, None]).clamp_min_(0.0).mul_(scale)
    return near_d2[:, :k], near_idx[:, :k], near_d2, near_idx, sq


def _knn_pass_linked(x: torch.Tensor, k: int, scale: float, separate):
    """Pass 1 with a relation (`stc.compress.st`): full transformed rows, as before issue 26."""
    m = x.shape[0]
    device = x.device
    ar = torch.arange(m, device=device)
    knn_d2 = torch.empty(m, k, device=device)
    knn_idx = torch.empty(m, k, dtype=torch.long, device=device)
    rows = _chunk_rows(m)
    for s in range(0, m, rows):
        d2 = separate(_sq_dists(x[s : s + rows], x, scale), ar[s : s + rows], ar)
        r = torch.arange(d2.shape[0], device=device)
        d2[r, ar[s : s + rows]] = math.inf
        knn_d2[s : s + rows], knn_idx[s : s + rows] = torch.topk(d2, k, dim=1, largest=False, sorted=True)
    return knn_d2, knn_idx


def dpc_knn(
    features: torch.Tensor, num_clusters: int, k: int = 7, linked: Linked | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Density-peak clustering with k-nearest-neighbour density (DPC-kNN).

    features: [m, D] tokens (any float dtype; distances in fp32, d = ||x_i - x_j|| / sqrt(D)).
    linked: optional relation over indices into ``features``; an unlinked pair is then farther
        apart than any linked pair: d^2 + Delta^2, with Delta^2 = 4 max_i ||x_i||^2 / D, an upper
        bound of every d^2 (so clusters form within linked tokens first). None: plain d.
    Returns (centres [c] indices into features in descending gamma order, labels [m] in [0, c)).

    rho_i = exp(-mean_{j in kNN(i)} d_ij^2) with kNN(i) excluding i; delta_i = distance to the
    nearest denser token (ties in rho broken by index: a lower index counts as denser), or the
    largest distance from i for the densest token; centres = top-c of rho * delta; every token
    joins its nearest centre, and each centre its own cluster. Work is chunked over rows.
    """
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
    # Unlinked pairs (if a relation is given) are pushed past every squared distance.
    penalty = 0.0 if linked is None else 4.0 * float((x * x).sum(dim=1).max()) * scale

    def separate(d2: torch.Tensor, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        return d2 if linked is None else d2.add_((~linked(i, j)).float(), alpha=penalty)

    if linked is None:
        knn_d2, knn_idx, near_d2, near_idx, sq = _knn_pass(x, k_eff, scale)
    else:
        knn_d2, knn_idx = _knn_pass_linked(x, k_eff, scale, separate)
        near_d2, near_idx, sq = knn_d2, knn_idx, None
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
        if linked is None:
            # Row-wise monotone transform after the reduction: min/max of the raw values.
            raw = torch.addmm(sq[None, :].expand(p.numel(), -1), x[p], x.T, alpha=-2.0)
            denser = is_denser(ar[None, :], p[:, None])
            nearest = raw.masked_fill(~denser, math.inf).amin(dim=1)
            lone = torch.isinf(nearest)
            nearest = torch.where(lone, raw.amax(dim=1), nearest)
            delta[p] = nearest.add_(sq[p]).clamp_min_(0.0).mul_(scale)
        else:
            d2 = separate(_sq_dists(x[p], x, scale), p, ar)
            denser = is_denser(ar[None, :], p[:, None])
            nearest = d2.masked_fill(~denser, math.inf).amin(dim=1)
            delta[p] = torch.where(torch.isinf(nearest), d2.amax(dim=1), nearest)
    delta = delta.sqrt()

    gamma = rho * delta
    centres = torch.sort(gamma, descending=True, stable=True).indices[:c]

    labels = torch.empty(m, dtype=torch.long, device=device)
    xc = x[centres]
    for s in range(0, m, _chunk_rows(c)):
        d2 = _sq_dists(x[s : s + _chunk_rows(c)], xc, scale)
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
) -> Compressed:
    """Compress a video's visual tokens to exactly ``budget`` tokens (stc stage 1).

    features: [T, N, D] projected visual tokens (fp32 / fp16 / bf16, any device).
    scores:   [T, N] contribution of every token (higher = more important).
    budget:   B, 1 <= B <= T*N.
    linked:   optional relation over flat indices (frame-major, into T*N) that restricts both
              the redundancy test and the clustering (see `unified_selection`, `dpc_knn`);
              None is the paper's method.
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
    recycle = torch.nonzero(~in_pool).squeeze(1)  # ascending flat index
    local = None if linked is None else (lambda a, b: linked(recycle[a], recycle[b]))
    centres, labels = dpc_knn(flat[recycle], budget - pool.numel(), knn_k, local)
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
        refilled = segment_mean(flat[recycle], labels, num_clusters)
    else:
        refilled = flat.new_empty(0, dim)

    tokens = torch.cat([flat[pool], refilled])[perm]
    return Compressed(tokens=tokens, source=source, assignment=assignment, selected=selected)
