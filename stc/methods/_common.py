"""Pieces the peers' stage-1 functions share: splitting a budget into exact
integer counts, and assembling a `Compressed` from "which output slot represents each input".

Every peer is written as: decide the output slots (their positions) and the assignment of
inputs to slots, then let :func:`assemble` sort the slots into original order and compute each
slot's token as the mean of its members. Budget splits are integer arithmetic on the host (a
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
