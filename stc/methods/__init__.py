"""The registry of token-compression methods: one name per method, everywhere.

A method is named by ``STCConfig(method=...)`` in the API, ``--methods`` on the command line,
and the app's method picker; `list_methods()` gives the names. Each method says three things:
how many tokens enter the LLM (its stage-1 budget), how it picks them (a pure function of the
encoder features and scores), and whether it shortens the visual span again inside the LLM (a
layer K, a keep count and a layer-K strategy, run by `stc.models.inner.InnerPruning`).
The algorithms themselves live in pure-function modules (`stc/compress.py`, `stc/merge.py`, and
one module per peer here); this file only wires them to configs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..compress import Compressed, compress_tokens
from ..config import round_half_up
from ..flops import default_inner_layer as depth_rule  # K = round(18/28 * layers)
from ..merge import Merged, merge_into_kept, text_aware_scores

# A stage-1 function: (features [S, N, D], scores [S, N], budget, *, grid (gh, gw), config)
# -> Compressed with exactly `budget` tokens in original order.
Stage1 = Callable[..., Compressed]


def identity(features: torch.Tensor) -> Compressed:
    """All S*N tokens, unchanged and in order."""
    s, n, d = features.shape
    ar = torch.arange(s * n, device=features.device)
    return Compressed(features.reshape(s * n, d), ar, ar.clone(), torch.ones(s * n, dtype=torch.bool, device=features.device))


@dataclass(frozen=True)
class Method:
    """One compression method.

    name / paper / summary: what it is and where it comes from.
    stage1: picks ``budget`` tokens before the LLM (None: keep every token).
    inner: builds the layer-K strategy from a config (None: nothing happens inside the LLM).
    default_layer: layer K when ``config.inner_layer`` is None, from the LLM depth.
    uses: the STCConfig fields the method reads (the app shows only these).
    stage1_budget / inner_keep_count: how the config's retention maps to token counts.
    """

    name: str
    paper: str
    summary: str
    stage1: Stage1 | None = None
    inner: Callable | None = None
    default_layer: Callable[[int], int] | None = None
    uses: tuple[str, ...] = ("retention",)
    retention_inside_llm: bool = False  # FastV: retention counts tokens kept after layer K

    def stage1_budget(self, config, total: int) -> int:
        if self.stage1 is None or self.retention_inside_llm:
            return total
        return config.budget(total)

    def inner_keep_count(self, config, total: int, n_stage1: int) -> int:
        """Visual tokens left after layer K (== n_stage1 when nothing happens inside)."""
        if self.inner is None:
            return n_stage1
        if self.retention_inside_llm:
            return min(n_stage1, config.budget(total))
        return min(n_stage1, max(1, round_half_up(config.inner_keep * n_stage1)))

    def layer(self, config, num_layers: int) -> int:
        if config.inner_layer is not None:
            return config.inner_layer
        return self.default_layer(num_layers)


def _stc_stage1(features, scores, budget, *, grid, config) -> Compressed:
    return compress_tokens(
        features, scores, budget, tau=config.tau, cluster_ratio=config.cluster_ratio, knn_k=config.knn_k
    )


def _stc_inner(config):
    def strategy(ctx) -> Merged:
        scores = text_aware_scores(ctx.visual, ctx.text, ctx.text_attn, config.text_weight)
        return merge_into_kept(ctx.visual, ctx.keep_count, scores)

    return strategy


_STC_PAPER = "Du et al., Unified Spatiotemporal Token Compression for Video-LLMs at Ultra-Low Retention, CVPR 2026 (arXiv 2603.21957)"

_REGISTRY: dict[str, Method] = {}


def register(method: Method) -> Method:
    if method.name in _REGISTRY:
        raise ValueError(f"method {method.name!r} is already registered")
    _REGISTRY[method.name] = method
    return method


register(Method("none", "-", "baseline: every visual token, unchanged", uses=()))
register(
    Method(
        "stc",
        _STC_PAPER,
        "unified spatiotemporal selection + DPC-kNN refill before the LLM; text-aware merging at layer K",
        stage1=_stc_stage1,
        inner=_stc_inner,
        default_layer=depth_rule,
        uses=("retention", "tau", "cluster_ratio", "knn_k", "inner_layer", "inner_keep", "text_weight"),
    )
)
register(
    Method(
        "stc-stage1",
        _STC_PAPER + ' (the paper\'s "w/o M" ablation)',
        "stc stage 1 only (no merging inside the LLM)",
        stage1=_stc_stage1,
        uses=("retention", "tau", "cluster_ratio", "knn_k"),
    )
)


def _load_peers() -> None:
    """Peers register themselves on import; a missing module must not break the core."""
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")


def list_methods() -> list[str]:
    """Names of every registered method (``none`` first, then ``stc``, then the peers)."""
    _load_peers()
    return list(_REGISTRY)


def get_method(name: str) -> Method:
    _load_peers()
    if name not in _REGISTRY:
        raise ValueError(f"unknown method {name!r}; available: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]
