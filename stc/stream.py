"""Stage 1 over a stream of frames: stc at a fixed token budget for videos too long to hold.

`StreamCompressor` takes a video's features chunk by chunk (``add``) and returns the same
`Compressed` as `compress_tokens` (``finish``), without ever holding every frame's features.

- **Exact within one window.** While at most ``window`` frames (default 64) have been added,
  the frames are buffered and ``finish`` is `compress_tokens` on their concatenation: the same
  result, bit for bit.
- **Beyond one window, a bounded-cost variant of the same method** (the whole buffer and every
  later frame go this way, in blocks of ``block`` frames, default 16):
  1. *Unified selection against a global retention pool.* Each block's tokens and the current
     pool are one candidate set; candidates are visited in descending score (ties: earlier
     token first) and kept by `unified_selection`'s rule (cos < tau to everything kept), up to
     the same quota B - round(cluster_ratio x B). The pool is the greedy result over (pool so
     far + this block); a pooled token displaced by a better, too-similar newcomer moves to
     the recycle pool. The exact algorithm differs where a token it would have pooled was
     recycled earlier by the stream (the stream cannot call it back). The pool never shrinks:
     should a block's greedy pass keep fewer tokens than the pool held, the best-scoring
     rejected candidates fill it back (so B - |pool| clusters always suffice below).
  2. *Clustering of the recycle pool that never compares every pair.* Each block's recycle
     tokens are clustered with `dpc_knn` into at most B - |pool| clusters (member-weighted
     mean, member count, centre token). Cluster sets are merged like a binary counter (two
     sets of one level -> one of the next: `dpc_knn` over their means, back to at most
     B - |pool|), so every pairwise step is over at most one block or 2 (B - |pool|) points,
     and at most `MAX_SUMMARIES` sets are held. ``finish`` gives each set a share of the
     B - |pool| refilled tokens proportional to the recycle tokens it covers and reduces it
     to that share the same way. A refilled token is the mean of its members, at its
     centre's position.
  Cost per block: one `unified_selection` over (quota + block tokens), one `dpc_knn` over the
  block's recycle tokens and about one over 2 (B - |pool|) cluster means: linear in frames.
  Memory: the window's frames until streaming starts, then one block (plus the chunk being
  added), the pool (quota tokens), at most MAX_SUMMARIES x B cluster means, and one int64
  label per input token (what `Compressed.assignment` needs: 1.6 MB for 1,024 x 196 tokens).

With ``temporal=True`` the compressor is the spatiotemporal variant ``stc-st``
(`stc.compress.st`): within a window ``finish`` is `compress_tokens_st`, bit for bit; beyond
it the same stream with the variant's relation "linked by persistence" in the selection and in
every clustering step. A token's persistence span only looks forward (at its own place, in later
frames), so the stream carries the spans of the tokens it holds (the pool and the cluster
centres) through each new block and knows the relation exactly for every pair it compares
(pool or block token against block token); a cluster set is linked to another through its
centre token's span, the one approximation beyond stc's own.

Sources are global flat indices over every frame added (frame-major), strictly increasing;
``assignment`` maps every input token to its output slot, as `compress_tokens` does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .arith import round_half_up, segment_mean
from .checks import check_int
from .compress import (
    DEFAULT_CLUSTER_RATIO,
    DEFAULT_DISTANCES,
    DEFAULT_KNN_K,
    DEFAULT_KNN_WINDOW,
    DEFAULT_TAU,
    DISTANCES,
    _normalize,
    compress_tokens,
    dpc_knn,
    unified_selection,
)
from .compress.st import DEFAULT_GAP, compress_tokens_st, extend_spans, linked_pairs
from .results import Compressed

__all__ = ["BLOCK_FRAMES", "MAX_SUMMARIES", "WINDOW_FRAMES", "StreamCompressor"]

# Up to this many frames the stream is exact (compress_tokens on everything): 64 frames of 196
# tokens are 12,544 tokens, whose DPC-kNN stays affordable.
WINDOW_FRAMES = 64
# Frames per block once the stream is past one window.
BLOCK_FRAMES = 16
# Cluster sets held at once (a binary counter holds log2(blocks) + 1: 7 for 1,024 frames of 16).
MAX_SUMMARIES = 8


class _Column:
    """A growable 1-D int64 tensor (labels of every input token, parents of cluster ids)."""

    def __init__(self, device):
        self._data = torch.empty(0, dtype=torch.long, device=device)
        self.size = 0

    def extend(self, values: torch.Tensor) -> None:
        need = self.size + values.numel()
        if need > self._data.numel():
            grown = torch.empty(max(need, 2 * self._data.numel()), dtype=torch.long, device=self._data.device)
            grown[: self.size] = self._data[: self.size]
            self._data = grown
        self._data[self.size : need] = values
        self.size = need

    @property
    def values(self) -> torch.Tensor:
        return self._data[: self.size]

    @property
    def nbytes(self) -> int:
        return self._data.numel() * 8


@dataclass
class _Clusters:
    """A set of recycle-pool clusters: member-weighted means [k, D] fp32, member counts [k],
    centre tokens [k] (global flat index), ids [k] (labels of their members), level, and (in
    temporal mode) the centre tokens' unit features [k, D]."""

    means: torch.Tensor
    counts: torch.Tensor
    centres: torch.Tensor
    ids: torch.Tensor
    level: int
    centre_unit: torch.Tensor | None = None

    @property
    def tokens(self) -> int:
        return int(self.counts.sum())

    @property
    def size(self) -> int:
        return self.ids.numel()


def _allocate(total: int, weights: list[int], caps: list[int]) -> list[int]:
    """``total`` split in proportion to ``weights`` (largest remainder, ties to the earlier), no
    share above its cap; needs sum(caps) >= total."""
    alloc = [0] * len(weights)
    free = [i for i in range(len(weights)) if caps[i] > 0]
    left = total
    while left > 0 and free:
        weight = sum(weights[i] for i in free)
        shares = [left * weights[i] / weight if weight else left / len(free) for i in free]
        full = [i for i, share in zip(free, shares) if share >= caps[i]]
        if full:  # these get their cap; share the rest among the others
            for i in full:
                alloc[i] = caps[i]
                left -= caps[i]
            free = [i for i in free if i not in full]
            continue
        floors = [int(share) for share in shares]
        ranked = sorted(range(len(free)), key=lambda j: (floors[j] - shares[j], j))
        for j in ranked[: left - sum(floors)]:
            floors[j] += 1
        for j, i in enumerate(free):
            alloc[i] = floors[j]
        left = 0
    return alloc


class StreamCompressor:
    """stc stage 1 over frames added chunk by chunk, at a fixed budget (see the module doc).

    budget: B output tokens (1 <= B <= all tokens added, checked by ``finish``).
    tau, cluster_ratio, knn_k, distances: as `compress_tokens`; knn_window too, within the window
        (beyond it blocks bound the clustering already).
    window: frames up to which the result is exact (`compress_tokens` on everything added).
    block: frames per block beyond the window.
    temporal, gap: the spatiotemporal variant ``stc-st`` (`compress_tokens_st`) and its gap.

    ``add(features [t, N, D], scores [t, N])`` for each chunk, in order (N and D fixed);
    ``finish()`` -> `Compressed` over all frames added, once.
    """

    def __init__(self, budget: int, *, tau: float = DEFAULT_TAU, cluster_ratio: float = DEFAULT_CLUSTER_RATIO,
                 knn_k: int = DEFAULT_KNN_K, window: int = WINDOW_FRAMES, block: int = BLOCK_FRAMES,
                 temporal: bool = False, gap: int = DEFAULT_GAP, distances: str = DEFAULT_DISTANCES,
                 knn_window: int = DEFAULT_KNN_WINDOW):
        self.budget = check_int("budget", budget, 1)
        if not isinstance(temporal, bool):
            raise ValueError(f"temporal must be True or False, got {temporal!r}")
        self.temporal = temporal
        self.gap = check_int("gap", gap, 0)
        if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not 0 < tau <= 1:
            raise ValueError(f"tau must be in (0, 1], got {tau!r}")
        if isinstance(cluster_ratio, bool) or not isinstance(cluster_ratio, (int, float)) or not 0 <= cluster_ratio < 1:
            raise ValueError(f"cluster_ratio must be in [0, 1), got {cluster_ratio!r}")
        self.tau, self.cluster_ratio = float(tau), float(cluster_ratio)
        self.knn_k = check_int("knn_k", knn_k, 1)
        if distances not in DISTANCES:
            raise ValueError(f"distances must be one of {', '.join(map(repr, DISTANCES))}, got {distances!r}")
        self.distances = distances
        self.knn_window = check_int("knn_window", knn_window, 0)
        self.window = check_int("window", window, 1)
        self.block = check_int("block", block, 1)
        self.quota = budget - round_half_up(self.cluster_ratio * budget)
        self.frames = 0  # frames added
        self._shape: tuple[int, int, torch.dtype, torch.device] | None = None  # N, D, dtype, device
        self._buffer: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._streaming = False
        self._finished = False
        self._processed = 0  # frames consumed by the streaming path

    # -- public ------------------------------------------------------------------------------
    @property
    def exact(self) -> bool:
        """True while everything added fits one window (``finish`` is then `compress_tokens`)."""
        return not self._streaming

    @property
    def tokens_per_frame(self) -> int | None:
        return None if self._shape is None else self._shape[0]

    @property
    def state_bytes(self) -> int:
        """Bytes of tensors this compressor holds now (buffered frames, pool, clusters, labels)."""
        held = sum(f.numel() * f.element_size() + s.numel() * s.element_size() for f, s in self._buffer)
        if self._streaming:
            held += sum(t.numel() * t.element_size() for t in (self._pool_idx, self._pool_feat, self._pool_unit,
                                                                 self._pool_score))
            held += sum(c.means.numel() * 4 + c.size * 24 for c in self._sets)
            held += self._labels.nbytes + self._parent.nbytes
            if self.temporal:
                held += self._hi.nbytes + self._misses.nbytes
                held += sum(c.centre_unit.numel() * 4 for c in self._sets)
        return held

    @torch.no_grad()
    def add(self, features: torch.Tensor, scores: torch.Tensor) -> None:
        """Add the next ``t`` frames: features [t, N, D] and their contribution scores [t, N]."""
        if self._finished:
            raise ValueError("this StreamCompressor has finished; make a new one")
        if features.dim() != 3 or features.shape[0] < 1:
            raise ValueError(f"features must be [t, N, D] with t >= 1, got shape {tuple(features.shape)}")
        t, n, d = features.shape
        if tuple(scores.shape) != (t, n):
            raise ValueError(f"scores must be [t, N] = {[t, n]}, got shape {tuple(scores.shape)}")
        if self._shape is None:
            self._shape = (n, d, features.dtype, features.device)
        elif (n, d, features.dtype, features.device) != self._shape:
            raise ValueError(f"every chunk must have N, D, dtype, device = {self._shape}, got "
                             f"{(n, d, features.dtype, features.device)}")
        self._buffer.append((features.detach(), scores.detach()))
        self.frames += t
        if not self._streaming and self.frames > self.window:
            self._start_streaming()
        if self._streaming:
            self._drain(final=False)

    @torch.no_grad()
    def finish(self) -> Compressed:
        """The compressed video: exactly ``budget`` tokens over every frame added, in original order."""
        if self._finished:
            raise ValueError("finish() was already called")
        if self._shape is None:
            raise ValueError("no frames were added")
        total = self.frames * self._shape[0]
        if self.budget > total:
            raise ValueError(f"budget must be an integer in [1, {total}] (all tokens added), got {self.budget}")
        self._finished = True
        if not self._streaming:
            features = torch.cat([f for f, _ in self._buffer])
            scores = torch.cat([s for _, s in self._buffer])
            self._buffer = []
            if self.temporal:
                return compress_tokens_st(features, scores, self.budget, tau=self.tau,
                                          cluster_ratio=self.cluster_ratio, knn_k=self.knn_k, gap=self.gap,
                                          distances=self.distances)
            return compress_tokens(features, scores, self.budget, tau=self.tau, cluster_ratio=self.cluster_ratio,
                                   knn_k=self.knn_k, distances=self.distances, knn_window=self.knn_window)
        self._drain(final=True)
        return self._result()

    # -- streaming ---------------------------------------------------------------------------
    def _start_streaming(self) -> None:
        n, d, dtype, device = self._shape
        self._streaming = True
        self._pool_idx = torch.empty(0, dtype=torch.long, device=device)  # ascending
        self._pool_feat = torch.empty(0, d, dtype=dtype, device=device)
        self._pool_unit = torch.empty(0, d, device=device)
        self._pool_score = torch.empty(0, device=device)
        self._labels = _Column(device)  # per input token: cluster id, -1 while in the pool
        self._parent = _Column(device)  # per cluster id: the id it was merged into (itself if not)
        self._sets: list[_Clusters] = []
        if self.temporal:
            self._hi = _Column(device)  # per input token: the end of its persistence span so far
            self._misses = _Column(device)  # ... frames without its look since then, -1: closed

    def _drain(self, final: bool) -> None:
        """Process the buffered frames in blocks (a partial last block only when ``final``)."""
        if not self._buffer:
            return
        features = torch.cat([f for f, _ in self._buffer]) if len(self._buffer) > 1 else self._buffer[0][0]
        scores = torch.cat([s for _, s in self._buffer]) if len(self._buffer) > 1 else self._buffer[0][1]
        self._buffer = []
        frames = features.shape[0]
        end = frames if final else frames - frames % self.block
        for s in range(0, end, self.block):
            self._block(features[s : s + self.block], scores[s : s + self.block])
        if end < frames:
            self._buffer = [(features[end:].clone(), scores[end:].clone())]

    def _linked(self):
        """The relation of `span_linked` over global flat indices (temporal mode), else None."""
        if not self.temporal:
            return None
        n, hi = self._shape[0], self._hi.values
        return lambda a, b: linked_pairs(a // n, hi[a], b // n, hi[b])

    def _carry_spans(self, block_unit: torch.Tensor, block_index: torch.Tensor) -> None:
        """Extend through this block the spans of every held token (pool, cluster centres) and
        of the block's own tokens (temporal mode)."""
        n = self._shape[0]
        self._hi.extend(block_index // n)
        self._misses.extend(torch.zeros_like(block_index))
        held = [(self._pool_unit, self._pool_idx)] + [(c.centre_unit, c.centres) for c in self._sets]
        held.append((block_unit, block_index))
        unit = torch.cat([u for u, _ in held])
        index = torch.cat([i for _, i in held])
        hi, misses = self._hi.values, self._misses.values
        frames = block_unit.view(-1, n, block_unit.shape[1])
        hi[index], misses[index] = extend_spans(unit, index, hi[index], misses[index], frames,
                                                self._processed, self.tau, self.gap)

    def _block(self, features: torch.Tensor, scores: torch.Tensor) -> None:
        """Unified selection of (pool + block); the rest -> clusters of the recycle pool."""
        b, n, d = features.shape
        flat = features.reshape(b * n, d)
        index = self._processed * n + torch.arange(b * n, device=flat.device)
        block_unit = _normalize(flat)
        if self.temporal:
            self._carry_spans(block_unit, index)
        # Candidates in ascending global index (pooled tokens are all earlier), so the stable
        # sort breaks score ties by index exactly as compress_tokens does.
        cand_idx = torch.cat([self._pool_idx, index])
        cand_feat = torch.cat([self._pool_feat, flat])
        cand_unit = torch.cat([self._pool_unit, block_unit])
        cand_score = torch.cat([self._pool_score, scores.reshape(b * n).float()])
        order = torch.sort(cand_score, descending=True, stable=True).indices
        linked = self._linked()
        local = None if linked is None else (lambda i, j: linked(cand_idx[i], cand_idx[j]))
        chosen = unified_selection(cand_unit, order, self.quota, self.tau, local)
        short = self._pool_idx.numel() - chosen.numel()
        if short > 0:  # the pool never shrinks: the best rejected candidates fill it back
            rejected = order[~torch.isin(order, chosen)]
            chosen = torch.cat([chosen, rejected[:short]])
        keep = torch.zeros(cand_idx.numel(), dtype=torch.bool, device=flat.device)
        keep[chosen] = True
        self._pool_idx, self._pool_feat = cand_idx[keep], cand_feat[keep]
        self._pool_unit, self._pool_score = cand_unit[keep], cand_score[keep]
        self._labels.extend(torch.full((b * n,), -1, dtype=torch.long, device=flat.device))
        self._processed += b
        recycle = torch.nonzero(~keep).squeeze(1)
        if recycle.numel() and self._clusters_needed:
            unit = cand_unit[recycle] if self.temporal else None
            self._push(self._leaves(cand_feat[recycle], cand_idx[recycle], unit))

    @property
    def _clusters_needed(self) -> int:
        """Refilled tokens if the video ended now: B - |pool|. Never grows (the pool never
        shrinks), so cluster sets of this size always suffice for finish()."""
        return self.budget - self._pool_idx.numel()

    def _new_ids(self, k: int, device) -> torch.Tensor:
        ids = torch.arange(self._parent.size, self._parent.size + k, device=device)
        self._parent.extend(ids)
        return ids

    def _leaves(self, features: torch.Tensor, index: torch.Tensor, unit: torch.Tensor | None) -> _Clusters:
        """One block's recycle tokens as at most B - |pool| DPC-kNN clusters."""
        m = features.shape[0]
        k = min(m, self._clusters_needed)
        if k == m:  # every token its own cluster
            means, counts, centres, labels = features.float(), torch.ones(m, dtype=torch.long,
                                                                        device=index.device), index, None
            centre = None
        else:
            linked = self._linked()
            local = None if linked is None else (lambda i, j: linked(index[i], index[j]))
            centre, labels = dpc_knn(features, k, self.knn_k, local, self.distances)
            means = segment_mean(features.float(), labels, k)
            counts = torch.bincount(labels, minlength=k)
            centres = index[centre]
        ids = self._new_ids(k, index.device)
        lab = self._labels.values
        lab[index] = ids if labels is None else ids[labels]
        centre_unit = None if not self.temporal else (unit if centre is None else unit[centre])
        return _Clusters(means, counts, centres, ids, level=0, centre_unit=centre_unit)

    def _reduce(self, sets: list[_Clusters], k: int, level: int) -> _Clusters:
        """The clusters of ``sets`` as at most ``k`` clusters (DPC-kNN over their means)."""
        means = torch.cat([s.means for s in sets])
        counts = torch.cat([s.counts for s in sets])
        centres = torch.cat([s.centres for s in sets])
        ids = torch.cat([s.ids for s in sets])
        centre_unit = torch.cat([s.centre_unit for s in sets]) if self.temporal else None
        if ids.numel() <= k:
            return _Clusters(means, counts, centres, ids, level, centre_unit)
        linked = self._linked()
        local = None if linked is None else (lambda i, j: linked(centres[i], centres[j]))
        centre, labels = dpc_knn(means, k, self.knn_k, local, self.distances)
        weighted = means.double() * counts[:, None].double()
        # segment_mean is deterministic on every device; x members = the segment's sum
        sums = segment_mean(weighted, labels, k) * torch.bincount(labels, minlength=k)[:, None].double()
        new_counts = torch.zeros(k, dtype=torch.long, device=ids.device).index_add_(0, labels, counts)
        new_ids = self._new_ids(k, ids.device)
        self._parent.values[ids] = new_ids[labels]
        return _Clusters((sums / new_counts[:, None].double()).float(), new_counts, centres[centre], new_ids, level,
                         None if centre_unit is None else centre_unit[centre])

    def _push(self, clusters: _Clusters) -> None:
        """Add a level-0 set; merge equal levels like a binary counter, at most MAX_SUMMARIES sets."""
        self._sets.append(clusters)
        while len(self._sets) >= 2 and self._sets[-1].level == self._sets[-2].level:
            b, a = self._sets.pop(), self._sets.pop()
            self._sets.append(self._reduce([a, b], self._clusters_needed, a.level + 1))
        while len(self._sets) > MAX_SUMMARIES:
            b, a = self._sets.pop(), self._sets.pop()
            self._sets.append(self._reduce([a, b], self._clusters_needed, a.level))

    def _result(self) -> Compressed:
        n, d, dtype, device = self._shape
        pool = self._pool_idx
        p = pool.numel()
        wanted = self.budget - p  # refilled clusters
        labels = self._labels.values
        sets = self._sets
        if wanted > 0:
            alloc = _allocate(wanted, [s.tokens for s in sets], [s.size for s in sets])
            # a set with no share joins the previous (older) one, else the next
            groups: list[tuple[list[_Clusters], int]] = []
            for s, a in zip(sets, alloc):
                if a == 0 and groups:
                    groups[-1][0].append(s)
                else:
                    groups.append(([s], a))
            if groups and groups[0][1] == 0 and len(groups) > 1:
                first = groups.pop(0)
                groups[0] = (first[0] + groups[0][0], groups[0][1])
            final = [self._reduce(g, a, 0) for g, a in groups]
            means = torch.cat([c.means for c in final])
            centres = torch.cat([c.centres for c in final])
            ids = torch.cat([c.ids for c in final])
        else:
            means = torch.empty(0, d, device=device)
            centres = ids = torch.empty(0, dtype=torch.long, device=device)
        clusters = ids.numel()
        assert p + clusters == self.budget, (p, clusters, self.budget)

        source, perm = torch.sort(torch.cat([pool, centres]))
        selected = torch.cat([torch.ones(p, dtype=torch.bool, device=device),
                              torch.zeros(clusters, dtype=torch.bool, device=device)])[perm]
        slot_of = torch.empty_like(perm)
        slot_of[perm] = torch.arange(perm.numel(), device=device)

        assignment = torch.full((labels.numel(),), -1, dtype=torch.long, device=device)
        assignment[pool] = slot_of[:p]
        recycled = torch.nonzero(labels >= 0).squeeze(1)
        if clusters and recycled.numel():
            parent = self._parent.values
            root = parent.clone()
            while True:  # follow merges to the final clusters (depth <= levels + 2)
                nxt = root[root]
                if torch.equal(nxt, root):
                    break
                root = nxt
            final_of = torch.full((parent.numel(),), -1, dtype=torch.long, device=device)
            final_of[ids] = torch.arange(clusters, device=device)
            assignment[recycled] = slot_of[p + final_of[root[labels[recycled]]]]
        tokens = torch.cat([self._pool_feat, means.to(dtype)])[perm]
        return Compressed(tokens=tokens, source=source, assignment=assignment, selected=selected)
