"""Pieces the peers' stage-1 functions share: splitting a budget into exact
integer counts, and assembling a `Compressed` from "which output slot represents each input".

Every peer is written as: decide the output slots (their positions) and the assignment of
inputs to slots, then let :func:`assemble` sort the slots into original order and compute each
slot's token as the mean of its members; a peer whose official merge is weighted (VisionZip's
target + member mean, HoliTom's and FastVID's beta) then rewrites its merged slots from
:func:`group_mean`. :func:`density_peaks` is the density-peak score HoliTom and FastVID share. Budget splits are integer arithmetic on the host (a
handful of numbers per frame or segment); the token work stays on the features' device.
"""

from __future__ import annotations

import torch

from ..arith import segment_mean
from ..results import Compressed


def even_split(total: int, parts: int) -> list[int]:
    """``total`` spread over ``parts`` as evenly as possible (counts differ by at most one; the
    larger ones evenly spaced): count_i = floor((i+1) total / parts) - floor(i total / parts)."""
    return [(i + 1) * total // parts - i * total // parts for i in range(parts)]


def apportion(total: int, weights: list[int], capacity: list[int]) -> list[int]:
    """Split ``total`` into integer counts proportional to ``weights`` with count_g <= capacity_g.

    Largest-remainder (Hamilton) apportionment, ties to the lower index; groups that would
    exceed their capacity are filled to it and the rest is re-apportioned over the others.
    Groups with weight 0 get nothing. Raises ValueError if the weighted groups cannot hold
    ``total``.
    """
    counts = [0] * len(weights)
    open_groups = [g for g, w in enumerate(weights) if w > 0 and capacity[g] > 0]
    remaining = total
    while remaining > 0 and open_groups:
        wsum = sum(weights[g] for g in open_groups)
        share = {g: remaining * weights[g] // wsum for g in open_groups}
        left = remaining - sum(share.values())
        by_remainder = sorted(open_groups, key=lambda g: (-(remaining * weights[g] % wsum), g))
        for g in by_remainder[:left]:
            share[g] += 1
        full = [g for g in open_groups if counts[g] + share[g] > capacity[g]]
        if not full:
            for g in open_groups:
                counts[g] += share[g]
            remaining = 0
            break
        for g in full:
            remaining -= capacity[g] - counts[g]
            counts[g] = capacity[g]
        open_groups = [g for g in open_groups if g not in full]
    if remaining > 0:
        raise ValueError(f"cannot place {total} tokens in groups of capacity {sum(capacity)}")
    return counts


def assemble(flat: torch.Tensor, source: torch.Tensor, assignment: torch.Tensor) -> Compressed:
    """The `Compressed` whose output slot j sits at flat position ``source[j]`` and is the mean
    of the inputs assigned to it.

    flat:       [M, D] input tokens.
    source:     [B] distinct flat positions of the slots, in any order.
    assignment: [M] slot (index into ``source``) of every input, -1 for dropped inputs. Every
                slot must have at least one member.
    Slots are sorted into original order; a slot whose only member is the token at its own
    position is `selected` and copied bit for bit.
    """
    budget = source.numel()
    source, perm = torch.sort(source)
    slot_of = torch.empty_like(perm)
    slot_of[perm] = torch.arange(budget, device=perm.device)
    has = assignment >= 0
    assignment = torch.where(has, slot_of[assignment.clamp_min(0)], assignment)
    members = assignment[has]
    tokens = segment_mean(flat[has], members, budget)
    counts = torch.bincount(members, minlength=budget)
    selected = (counts == 1) & (assignment[source] == torch.arange(budget, device=source.device))
    tokens[selected] = flat[source[selected]]
    return Compressed(tokens=tokens, source=source, assignment=assignment, selected=selected)


def ranks_within_rows(values: torch.Tensor) -> torch.Tensor:
    """[R, C] -> [R, C] long: each entry's rank in its row by descending value (ties: lower
    column first), so ``ranks < k`` selects each row's top k."""
    order = torch.sort(values, dim=1, descending=True, stable=True).indices
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(values.shape[1], device=values.device).expand_as(order).contiguous())
    return ranks


def group_mean(values: torch.Tensor, labels: torch.Tensor, groups: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean of the rows of values [m, D] per label in [0, groups) (-1: in no group) ->
    (means [groups, D] fp32, zero for an empty group; counts [groups] long).

    Deterministic on every device (sorted cumulative sums in fp64, as `segment_mean`)."""
    keep = labels >= 0
    values, labels = values[keep], labels[keep]
    counts = torch.bincount(labels, minlength=groups)
    order = torch.sort(labels, stable=True).indices
    csum = torch.cat([values.new_zeros(1, values.shape[1], dtype=torch.float64),
                      torch.cumsum(values[order].double(), dim=0)])
    ends = torch.cumsum(counts, 0)
    totals = csum[ends] - csum[ends - counts]
    return (totals / counts.clamp_min(1)[:, None].double()).float(), counts


def density_peaks(x: torch.Tensor, num: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The density-peak scoring HoliTom and FastVID share (their ``cluster_dpc_knn``):
    x [m, D] -> (peaks [min(num, m)] indices into x in descending score order, dist [m, m] fp32).

    dist = ||x_i - x_j|| / sqrt(D); the k nearest distances of a row INCLUDE the token's own zero
    (k = 7 is 6 real neighbours), capped at m; rho = exp(-mean of their squares); delta = the
    distance to the nearest denser token, the largest distance of the whole set for the densest;
    score = rho x delta. The originals break density ties with 1e-6 of random noise; here a lower
    index counts as denser, so the result is deterministic. Dense [m, m]: m is one frame's or one
    segment's tokens.
    """
    m = x.shape[0]
    x = x.float()
    dist = torch.cdist(x[None], x[None])[0] / x.shape[1] ** 0.5
    nearest = torch.topk(dist, max(1, min(k, m)), dim=1, largest=False).values
    rho = torch.exp(-(nearest**2).mean(dim=1))
    ar = torch.arange(m, device=x.device)
    denser = (rho[None, :] > rho[:, None]) | ((rho[None, :] == rho[:, None]) & (ar[None, :] < ar[:, None]))
    delta = dist.masked_fill(~denser, float("inf")).amin(dim=1)
    delta = torch.where(torch.isinf(delta), dist.max(), delta)
    score = rho * delta
    peaks = torch.sort(score, descending=True, stable=True).indices[: max(0, min(num, m))]
    return peaks, dist
