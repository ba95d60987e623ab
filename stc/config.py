"""Configuration of a compression run.

One dataclass names every knob of the method (shared/method.md); fields are validated on
construction so a nonsense config fails loudly instead of producing wrong science. The config is
immutable: runtime state never lives here.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, Mapping

from .arith import budget_for
from .checks import check_int, check_real
from .compress import DEFAULT_CLUSTER_RATIO, DEFAULT_KNN_K, DEFAULT_TAU
from .merge import DEFAULT_TEXT_WEIGHT
from .methods import POSITIONS, get_method


@dataclass(frozen=True)
class STCConfig:
    """Hyper-parameters of stc (defaults are the paper's; see shared/method.md).

    method: the compression method, a name from `stc.list_methods()` ("stc" by default; "none"
        is the uncompressed baseline). Each method reads only the fields it documents.
    Stage 1 (before the LLM):
        retention: fraction of visual tokens that enter the LLM, 0 < r <= 1 (budget
            B = round(r * T * N), at least 1).
        max_tokens: instead of ``retention``: the budget B in tokens, whatever the video's
            length (B = min(max_tokens, T * N)), an integer >= 1. Give one of the two. The
            way to give a long video "the cost of a short one": the same B over more frames.
            Not for methods whose official defaults depend on the retention (HoliTom).
        tau: cosine threshold of unified selection; a candidate joins the retention pool only
            if its similarity to every pooled token is below tau. In (0, 1].
        cluster_ratio: share of the budget given to refilled DPC-kNN clusters, in [0, 1).
        knn_k: neighbours in the DPC-kNN local density, >= 1.
    Stage 2 (inside the LLM, during prefill):
        inner_layer: decoder layer K at whose input visual tokens are merged; None = the depth
            rule round(18/28 * num_layers). >= 0.
        inner_keep: fraction R of the visual tokens kept at layer K, 0 < R <= 1; 1.0 turns
            stage 2 off.
        text_weight: lambda, weight of the hidden-state similarity against the attention term,
            in [0, 1].
    Every method:
        positions: the position ids of the compressed sequence: "original" (each kept token
            keeps its uncompressed position) or "contiguous" (the compressed sequence is
            renumbered 0, 1, 2, ...); None (default) = the method's official convention
            (`stc.get_method(m).positions`). Force one to compare methods under one rule.
        options: a mapping of the method's own knobs (`stc.get_method(m).options` lists them
            with their official defaults); unknown names are refused. Stored read-only.
    """

    retention: float | None = None
    method: str = "stc"
    # stage 1
    tau: float = DEFAULT_TAU
    cluster_ratio: float = DEFAULT_CLUSTER_RATIO
    knn_k: int = DEFAULT_KNN_K
    # stage 2
    inner_layer: int | None = None
    inner_keep: float = 0.5
    text_weight: float = DEFAULT_TEXT_WEIGHT
    # every method
    positions: str | None = None
    options: Mapping[str, Any] | None = None
    max_tokens: int | None = None

    def __post_init__(self) -> None:
        if self.max_tokens is not None:
            if self.retention is not None:
                raise ValueError("give retention or max_tokens, not both")
            checked = {"max_tokens": check_int("max_tokens", self.max_tokens, 1)}
        elif self.retention is None:
            raise ValueError("STCConfig needs retention (a fraction of the tokens) or max_tokens (a token budget)")
        else:
            checked = {"retention": check_real("retention", self.retention, 0.0, 1.0, lo_open=True, hi_open=False)}
        checked |= {
            "tau": check_real("tau", self.tau, 0.0, 1.0, lo_open=True, hi_open=False),
            "cluster_ratio": check_real(
                "cluster_ratio", self.cluster_ratio, 0.0, 1.0, lo_open=False, hi_open=True
            ),
            "knn_k": check_int("knn_k", self.knn_k, 1),
            "inner_keep": check_real("inner_keep", self.inner_keep, 0.0, 1.0, lo_open=True, hi_open=False),
            "text_weight": check_real(
                "text_weight", self.text_weight, 0.0, 1.0, lo_open=False, hi_open=False
            ),
        }
        if not isinstance(self.method, str):
            raise ValueError(f"method must be a method name (see stc.list_methods()), got {self.method!r}")
        method = get_method(self.method)  # ValueError naming the available methods
        if self.max_tokens is not None and method.retention_defaults is not None:
            raise ValueError(f"method {self.method!r} sets its defaults from the retention: give retention, "
                             "not max_tokens")
        if self.positions not in POSITIONS:
            raise ValueError(f"positions must be one of {', '.join(map(repr, POSITIONS))}, got {self.positions!r}")
        checked["options"] = method.check_options(self.options, self.retention)
        if self.inner_layer is not None:
            checked["inner_layer"] = check_int("inner_layer", self.inner_layer, 0)
        for name, value in checked.items():
            object.__setattr__(self, name, value)

    def budget(self, total_tokens: int) -> int:
        """Stage-1 budget: round(retention * total_tokens), or max_tokens; clamped to [1, total_tokens]."""
        if self.max_tokens is not None:
            return max(1, min(total_tokens, self.max_tokens))
        return budget_for(self.retention, total_tokens)

    def replace(self, **changes) -> "STCConfig":
        """A copy with ``changes`` applied (and validated)."""
        return replace(self, **changes)

    def to_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["options"] = dict(self.options) if self.options is not None else None
        return out

    def option(self, name: str):
        """The value of the method's own knob ``name``: this config's, else the method's
        official default for this retention."""
        return get_method(self.method).resolve_options(self)[name]

    @property
    def position_rule(self) -> str:
        """"original" or "contiguous": this config's ``positions``, else the method's own."""
        return self.positions or get_method(self.method).positions
