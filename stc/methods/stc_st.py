"""`stc-st`: stc with redundancy that is local in time, so repeated events survive (issue 23).

The method's registration; the algorithm (persistence spans, the "linked" relation, selection
and DPC-kNN restricted to linked tokens) is `stc.compress.st`, whose docstring says what it does
and why its defaults are what they are. Everything else is stc: contribution order, tau,
cluster ratio, DPC-kNN with k = 7, refill, stage 2.
"""

from __future__ import annotations

import math

from ..arith import default_inner_layer
from ..compress import DEFAULT_DISTANCES, DISTANCES
from ..compress.st import DEFAULT_GAP, compress_tokens_st
from ..merge import Merged, merge_into_kept, text_aware_scores
from ..results import Compressed
from .base import Method


def _stage1(features, scores, budget, *, grid, config, options) -> Compressed:
    return compress_tokens_st(features, scores, budget, tau=config.tau, cluster_ratio=config.cluster_ratio,
                              knn_k=config.knn_k, gap=options["gap"],
                              distances=options["distances"])


def _inner(config):
    # stc's stage 2, unchanged (text-aware merging at layer K).
    def strategy(ctx) -> Merged:
        scores = text_aware_scores(ctx.visual, ctx.text, ctx.text_attn, config.text_weight)
        return merge_into_kept(ctx.visual, ctx.keep_count, scores)

    return strategy


def _stream(config) -> dict:
    return {"tau": config.tau, "cluster_ratio": config.cluster_ratio, "knn_k": config.knn_k,
            "temporal": True, "gap": config.option("gap"),
            "distances": config.option("distances")}


METHOD = Method(
    "stc-st",
    "this project's variant of Du et al., CVPR 2026 (issue 23): redundancy local in time",
    "stc whose redundancy test and clusters only join tokens whose content persisted from one to the "
    "other, so a repeated event is kept once per occurrence; stc's stage 2",
    stage1=_stage1,
    inner=_inner,
    default_layer=default_inner_layer,
    uses=("retention", "tau", "cluster_ratio", "knn_k", "inner_layer", "inner_keep", "text_weight"),
    options={"gap": DEFAULT_GAP, "distances": DEFAULT_DISTANCES},
    option_choices={"distances": DISTANCES},
    option_ranges={"gap": (0, math.inf)},
    stream=_stream,
)
