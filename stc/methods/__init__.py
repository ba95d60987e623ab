"""The registry of token-compression methods: one name per method, everywhere.

A method is named by ``STCConfig(method=...)`` in the API, ``--methods`` on the command line,
and the app's method picker; `list_methods()` gives the names. What a method is (`Method`) and
the one place its stage 1 is called (`Method.compress`, or its streaming twin
`Method.compressor`) live in `base`; the algorithms in pure-function modules (`stc/compress/`,
`stc/merge.py`, one module per peer and one for the variant `stc-st` here). This file lists
them: a method is in the registry because it is named below, and nothing is discovered by
scanning the package.
"""

from __future__ import annotations

import math

from ..arith import default_inner_layer
from ..compress import DEFAULT_DISTANCES, DEFAULT_KNN_WINDOW, DISTANCES, compress_tokens
from ..merge import Merged, merge_into_kept, text_aware_scores
from . import evs, fastv, fastvid, flashvid, holitom, random_tokens, stc_st, uniform, vidcom2, visionzip
from .base import (
    POSITIONS,
    FrozenOptions,
    Method,
    Stage1,
    TokenCounts,
    check_stage1_inputs,
    identity,
    stage1_then_keep,
)

__all__ = ["POSITIONS", "FrozenOptions", "Method", "Stage1", "TokenCounts", "check_stage1_inputs", "get_method", "identity", "list_methods",
           "register", "stage1_then_keep"]


def _stc_stage1(features, scores, budget, *, grid, config, options):
    return compress_tokens(features, scores, budget, tau=config.tau, cluster_ratio=config.cluster_ratio,
                           knn_k=config.knn_k, distances=options["distances"], knn_window=options["knn_window"])


def _stc_stream(config) -> dict:
    return {"tau": config.tau, "cluster_ratio": config.cluster_ratio, "knn_k": config.knn_k,
            "distances": config.option("distances"), "knn_window": config.option("knn_window")}


# stc's options (`stc.compress`, issue 26): the precision of DPC-kNN's distances, and the
# frames either side its neighbours are searched in (0: everywhere, the paper's method).
_STC_OPTIONS = {"options": {"distances": DEFAULT_DISTANCES, "knn_window": DEFAULT_KNN_WINDOW},
                "option_choices": {"distances": DISTANCES}, "option_ranges": {"knn_window": (0, math.inf)}}


def _stc_inner(config):
    def strategy(ctx) -> Merged:
        scores = text_aware_scores(ctx.visual, ctx.text, ctx.text_attn, config.text_weight)
        return merge_into_kept(ctx.visual, ctx.keep_count, scores)

    return strategy


_STC_PAPER = "Du et al., Unified Spatiotemporal Token Compression for Video-LLMs at Ultra-Low Retention, CVPR 2026 (arXiv 2603.21957)"

NONE = Method("none", "-", "baseline: every visual token, unchanged", uses=())
STC = Method(
    "stc",
    _STC_PAPER,
    "unified spatiotemporal selection + DPC-kNN refill before the LLM; text-aware merging at layer K",
    stage1=_stc_stage1,
    inner=_stc_inner,
    default_layer=default_inner_layer,
    uses=("retention", "tau", "cluster_ratio", "knn_k", "inner_layer", "inner_keep", "text_weight"),
    stream=_stc_stream,
    **_STC_OPTIONS,
)
STC_STAGE1 = Method(
    "stc-stage1",
    _STC_PAPER + ' (the paper\'s "w/o M" ablation)',
    "stc stage 1 only (no merging inside the LLM)",
    stage1=_stc_stage1,
    uses=("retention", "tau", "cluster_ratio", "knn_k"),
    stream=_stc_stream,
    **_STC_OPTIONS,
)

# The baseline, stc, its spatiotemporal variant, the peers of the stc paper's tables (alphabetical
# by module), the two pruners vLLM ships, then FlashVID (a later peer).
_REGISTRY: dict[str, Method] = {
    m.name: m
    for m in (NONE, STC, STC_STAGE1, stc_st.METHOD, fastv.METHOD, fastvid.METHOD, holitom.METHOD,
              random_tokens.METHOD, uniform.METHOD, visionzip.METHOD, evs.METHOD, vidcom2.METHOD,
              flashvid.METHOD)
}


def register(method: Method) -> Method:
    """Add a method of your own (a name not taken); it is then usable as STCConfig(method=name)."""
    if not isinstance(method, Method):
        raise TypeError(f"register takes a Method, got {type(method).__name__}")
    if method.name in _REGISTRY:
        raise ValueError(f"method {method.name!r} is already registered")
    _REGISTRY[method.name] = method
    return method


def list_methods() -> list[str]:
    """Names of every registered method (``none`` first, then ``stc``, then the peers)."""
    return list(_REGISTRY)


def get_method(name: str) -> Method:
    if name not in _REGISTRY:
        raise ValueError(f"unknown method {name!r}; available: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]
