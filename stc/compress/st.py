"""Stage 1 of `stc-st` (this project's variant of stc, issue 23): redundancy local in time.

Pure tensor functions, no model code, beside stc's own stage 1 (`stc.compress`, whose
`compress_tokens` they call with a ``linked`` relation); the method's registration is `stc.methods.stc_st`, the
streaming form `stc.stream.StreamCompressor(temporal=True)`.

stc's unified selection calls a candidate redundant when it is similar (cos >= tau) to ANY token
already pooled, anywhere in the video, and DPC-kNN clusters the recycle pool globally. A thing
that happens twice, far apart in time, is then a duplicate of its first occurrence (issue 23's
hypothesis for stc's loss on the toy's count questions; measured since, the toy's loss has
another cause: README, "A toy model for offline accuracy"). This variant changes
one thing, the relation "may count as the same content", and keeps everything else of stc
(contribution order, tau, cluster ratio, DPC-kNN with k = 7, refill, stage 2):

- **Persistence span.** A token x at frame t and place q persists through the following frames
  while the token at the SAME place keeps its look: cos(x, x_{u,q}) >= tau (the paper's own tau,
  "the same content") for every u in t+1..h, allowing at most ``gap`` consecutive frames that
  fail (default 0). ``hi`` = the last such frame h (t itself when the next frame already
  differs). Only the token's own place is looked at: content that stayed put is the same
  content; the same look at another place one frame later is a new occurrence (it "flashed"
  there), and the same look at any place after a frame of absence is a recurrence.
- **Linked.** Two tokens are linked when the later one lies inside the earlier one's span:
  t_i <= t_j <= hi_i or t_j <= t_i <= hi_j. Tokens of one frame are always linked (within a frame
  the variant is stc); tokens of a static scene are all linked (stc's global deduplication of
  what persists is kept); two occurrences separated by a frame where the content is gone are not.
- **Selection:** a pooled token rejects a candidate only if cos >= tau AND they are linked.
- **Clustering:** DPC-kNN over the recycle pool with unlinked pairs placed farther apart than
  any linked pair (d^2 + Delta^2, Delta^2 an upper bound of every d^2), so a recurrence forms
  its own cluster whenever there are clusters enough, and a refilled token never averages
  occurrences that persistence does not connect unless the budget forces it.

Defaults: tau = 0.7, cluster ratio 0.3, k = 7, stage 2 as stc (the paper's values: nothing
about them is specific to recurrence); ``gap`` = 0: one sampled frame of absence separates two
occurrences, the finest temporal resolution a sampled video has (32 frames over a clip put
sampled frames seconds apart; bridging even one would merge a count like "flashed in frames 5
and 7"). Cost on top of stc: the spans (N x T x T cosines, far below stc's pairwise pass) and a
boolean mask per pairwise chunk.
"""
from __future__ import annotations

import torch

from . import DEFAULT_CLUSTER_RATIO, DEFAULT_DISTANCES, DEFAULT_KNN_K, DEFAULT_TAU, Linked, compress_tokens
from ..results import Compressed

__all__ = ["DEFAULT_GAP", "compress_tokens_st", "extend_spans", "linked_pairs", "persistence_spans", "span_ends",
           "span_linked"]

DEFAULT_GAP = 0  # frames of absence a persistence span may bridge

# Elements of one [positions, T, T] chunk of the span computation (fp32): 16M -> 64 MiB.
_CHUNK_ELEMENTS = 1 << 24


def _check_gap(gap) -> int:
    if isinstance(gap, bool) or not isinstance(gap, int) or gap < 0:
        raise ValueError(f"gap must be an integer >= 0, got {gap!r}")
    return gap


def span_ends(present: torch.Tensor, gap: int = DEFAULT_GAP) -> torch.Tensor:
    """Where each token's persistence span ends, from its presence in every frame.

    present: [T, T, N] bool, present[t, u, q]: the look of token (t, q) is at place q in frame u
             (only u > t is read).
    Returns hi [T, N] long: the last frame h >= t such that frames t+1..h never hold more than
    ``gap`` consecutive frames without the look, and frame h holds it (h = t if none does).
    """
    t_frames, _, n = present.shape
    device = present.device
    starts = torch.arange(t_frames, device=device)[:, None]
    hi = starts.expand(t_frames, n).clone()
    misses = torch.zeros(t_frames, n, dtype=torch.long, device=device)
    open_ = torch.ones(t_frames, n, dtype=torch.bool, device=device)
    for u in range(1, t_frames):
        later = starts < u  # spans that started before frame u
        here = present[:, u, :]
        hi = torch.where(open_ & later & here, u, hi)
        misses = torch.where(later & ~here, misses + 1, 0)
        open_ &= misses <= gap
    return hi


@torch.no_grad()
def persistence_spans(features: torch.Tensor, tau: float = DEFAULT_TAU, gap: int = DEFAULT_GAP) -> torch.Tensor:
    """The persistence span of every token: hi [T, N] long (see the module doc).

    features: [T, N, D]. Token (t, q) is present in frame u when cos(x_{t,q}, x_{u,q}) >= tau.
    Cost N x T^2 x D multiply-adds, chunked over places.
    """
    _check_gap(gap)
    t_frames, n, _ = features.shape
    unit = torch.nn.functional.normalize(features.float(), dim=-1)
    present = torch.empty(t_frames, t_frames, n, dtype=torch.bool, device=features.device)
    places = max(1, _CHUNK_ELEMENTS // max(1, t_frames * t_frames))
    for q in range(0, n, places):
        block = unit[:, q : q + places].transpose(0, 1)  # [places, T, D]
        present[:, :, q : q + places] = (block @ block.transpose(1, 2) >= tau).permute(1, 2, 0)
    return span_ends(present, gap)


@torch.no_grad()
def extend_spans(
    unit: torch.Tensor,
    index: torch.Tensor,
    hi: torch.Tensor,
    misses: torch.Tensor,
    frames_unit: torch.Tensor,
    first_frame: int,
    tau: float = DEFAULT_TAU,
    gap: int = DEFAULT_GAP,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Carry persistence spans through the next frames, for a stream that holds a few tokens.

    unit:   [H, D] unit features of the tokens; index: [H] long, their flat index (frame-major
            over N places); hi: [H] long, span ends so far; misses: [H] long, frames without the
            look since hi (-1 once the span is closed).
    frames_unit: [b, N, D] unit features of frames first_frame..first_frame+b-1 (every frame a
            span could still reach; frames at or before a token's own frame are skipped).
    Returns (hi, misses) after those frames: the same spans `persistence_spans` gives for them.
    """
    b, n, _ = frames_unit.shape
    frame, place = index // n, index % n
    hi, misses = hi.clone(), misses.clone()
    for i in range(b):
        u = first_frame + i
        later = (frame < u) & (misses >= 0)
        here = (unit * frames_unit[i, place]).sum(dim=1) >= tau
        hi = torch.where(later & here, u, hi)
        misses = torch.where(later, torch.where(here, 0, misses + 1), misses)
        misses = torch.where(misses > gap, -1, misses)
    return hi, misses


def linked_pairs(frame_a: torch.Tensor, hi_a: torch.Tensor, frame_b: torch.Tensor, hi_b: torch.Tensor) -> torch.Tensor:
    """[r] and [c] tokens (frames, span ends) -> bool [r, c]: one lies inside the other's span,
    t_a <= t_b <= hi_a or t_b <= t_a <= hi_b."""
    fa, ha, fb, hb = frame_a[:, None], hi_a[:, None], frame_b[None, :], hi_b[None, :]
    return ((fa <= fb) & (fb <= ha)) | ((fb <= fa) & (fa <= hb))


def span_linked(frame: torch.Tensor, hi: torch.Tensor) -> Linked:
    """The relation "one token lies inside the other's persistence span" (`linked_pairs`).

    frame, hi: [M] long, each token's frame and span end, indexed like the tokens the relation
    is asked about. Returns linked(a [r], b [c]) -> bool [r, c]."""
    return lambda a, b: linked_pairs(frame[a], hi[a], frame[b], hi[b])


@torch.no_grad()
def compress_tokens_st(
    features: torch.Tensor,
    scores: torch.Tensor,
    budget: int,
    *,
    tau: float = DEFAULT_TAU,
    cluster_ratio: float = DEFAULT_CLUSTER_RATIO,
    knn_k: int = DEFAULT_KNN_K,
    gap: int = DEFAULT_GAP,
    distances: str = DEFAULT_DISTANCES,
) -> Compressed:
    """stc's stage 1 with time-local redundancy: exactly ``budget`` tokens, in original order.

    features: [T, N, D] projected visual tokens; scores: [T, N] contributions; 1 <= budget <= T*N.
    Everything is `stc.compress_tokens` except that redundancy and clusters only connect tokens
    linked by persistence (`persistence_spans`, `span_linked`); ``distances`` as there.
    """
    if features.dim() != 3:
        raise ValueError(f"features must be [T, N, D], got shape {tuple(features.shape)}")
    t_frames, n, _ = features.shape
    hi = persistence_spans(features, tau, gap).reshape(-1)
    frame = torch.arange(t_frames * n, device=features.device) // n
    return compress_tokens(features, scores, budget, tau=tau, cluster_ratio=cluster_ratio, knn_k=knn_k,
                           linked=span_linked(frame, hi), distances=distances)
