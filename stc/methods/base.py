"""What a compression method is, and the one place its stage 1 is called.

A `Method` says how many tokens enter the LLM and how many are left after layer K (`counts`, a
function of the config and the video's token count), how it picks the first (`stage1`, a pure
function of the encoder features and scores) and how it shortens the visual span inside the LLM
(`inner`, a layer-K strategy run by `stc.models.inner.InnerPruning`). `Method.compress` checks
the inputs and handles the keep-everything case once, so the methods' own functions only
compress; its streaming twin `Method.compressor` is how a method that streams (``stream``)
runs stage 1 over a long video chunk by chunk. Nothing else calls a stage 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from numbers import Integral, Real
from typing import TYPE_CHECKING, Any, Callable, Mapping, NamedTuple

import torch

from ..arith import keep_count
from ..results import Compressed
from ..stream import StreamCompressor

if TYPE_CHECKING:
    from ..config import STCConfig

# A stage-1 function: (features [S, N, D], scores [S, N], budget, *, grid (gh, gw), config,
# options) -> Compressed with exactly `budget` tokens in original order; 1 <= budget < S*N.
# ``options`` is the method's own knobs, resolved once by `Method.compress`.
Stage1 = Callable[..., Compressed]


# How the compressed sequence is numbered: each kept token at its uncompressed position, or the
# compressed sequence renumbered 0, 1, 2, ... (None in a config: the method's own convention).
POSITIONS = (None, "original", "contiguous")


class FrozenOptions(dict):
    """A method's options as a config holds them: a read-only, hashable, picklable dict."""

    def __hash__(self):
        return hash(tuple(sorted(self.items())))

    def __reduce__(self):
        return (FrozenOptions, (dict(self),))

    def _read_only(self, *args, **kwargs):
        raise TypeError("a config's options are read-only: use config.replace(options={...})")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _read_only


class TokenCounts(NamedTuple):
    """Visual tokens that enter the LLM (after stage 1) and that are left after layer K."""

    stage1: int
    after_layer: int


def check_stage1_inputs(features: torch.Tensor, scores: torch.Tensor, budget: int) -> tuple[int, int, int]:
    """Validate [S, N, D] features, [S, N] scores and 1 <= budget <= S*N; return (S, N, D)."""
    if features.dim() != 3:
        raise ValueError(f"features must be [S, N, D], got shape {tuple(features.shape)}")
    s, n, d = features.shape
    if tuple(scores.shape) != (s, n):
        raise ValueError(f"scores must be [S, N] = {[s, n]}, got shape {tuple(scores.shape)}")
    if isinstance(budget, bool) or not isinstance(budget, int) or not 1 <= budget <= s * n:
        raise ValueError(f"budget must be an integer in [1, {s * n}] (S*N), got {budget!r}")
    return s, n, d


def identity(features: torch.Tensor) -> Compressed:
    """All S*N tokens, unchanged and in order."""
    s, n, d = features.shape
    ar = torch.arange(s * n, device=features.device)
    return Compressed(features.reshape(s * n, d), ar, ar.clone(), torch.ones(s * n, dtype=torch.bool, device=features.device))


def stage1_then_keep(method: "Method", config: "STCConfig", total: int) -> TokenCounts:
    """The usual counts: stage 1 keeps config.budget(total), i.e. round(retention x total) or
    max_tokens (every token without a stage 1);
    layer K keeps round(inner_keep x that) (nothing changes without an inner strategy)."""
    first = config.budget(total) if method.stage1 is not None else total
    return TokenCounts(first, keep_count(config.inner_keep, first) if method.inner is not None else first)


@dataclass(frozen=True)
class Method:
    """One compression method.

    name / paper / summary: what it is and where it comes from.
    stage1: picks ``budget`` tokens before the LLM (None: keep every token).
    inner: builds the layer-K strategy from a config (None: nothing happens inside the LLM).
    inner_attention: whose attention that strategy sees: layer K's own ("same") or the one
        computed inside layer K-1 ("previous", layer 0's own when K = 0).
    default_layer: layer K when ``config.inner_layer`` is None, from the LLM depth.
    uses: the STCConfig fields the method reads (the app shows only these).
    stream: config -> keyword arguments of `stc.StreamCompressor` for a long video streamed
        chunk by chunk (None: the method does not stream; the video is encoded whole).
    counts: (method, config, total visual tokens) -> `TokenCounts`: what the config's
        retention means for this method (`stage1_then_keep` unless the method says otherwise).
    """

    name: str
    paper: str
    summary: str
    stage1: Stage1 | None = None
    inner: Callable | None = None
    default_layer: Callable[[int], int] | None = None
    uses: tuple[str, ...] = ("retention",)
    counts_rule: Callable[["Method", "STCConfig", int], TokenCounts] = stage1_then_keep
    # The method's own knobs with their official defaults, and [lo, hi] where a knob has bounds.
    options: Mapping[str, Any] = field(default_factory=dict)
    option_ranges: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    # The allowed values of a knob that is one of a few names (e.g. FlashVID's selection).
    option_choices: Mapping[str, tuple] = field(default_factory=dict)
    # Official defaults that depend on the retention (e.g. HoliTom's tau): retention -> {name: value}.
    retention_defaults: Callable[[float], Mapping[str, Any]] | None = None
    # The official position convention: "original" or "contiguous".
    positions: str = "original"
    inner_attention: str = "same"
    stream: Callable[["STCConfig"], Mapping[str, Any]] | None = None

    def check_options(self, options, retention: float) -> FrozenOptions | None:
        """``options`` validated against this method's knobs (ValueError naming the bad one)."""
        if options is None:
            return None
        if not isinstance(options, Mapping):
            raise ValueError(f"options must be a mapping of {self.name}'s knobs, got {type(options).__name__}")
        checked = {}
        for name, value in options.items():
            if name not in self.options:
                known = ", ".join(sorted(self.options)) or "none"
                raise ValueError(f"method {self.name!r} has no option {name!r}; its options: {known}")
            default = self.options[name]
            if isinstance(default, tuple) and isinstance(value, list):
                value = tuple(value)  # a tuple knob read back from JSON or a form
            if isinstance(default, bool):
                ok = isinstance(value, bool)
            elif isinstance(default, Integral):
                ok = isinstance(value, Integral) and not isinstance(value, bool)
            elif isinstance(default, Real):
                ok = isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)
            else:
                ok = isinstance(value, type(default))
            lo, hi = self.option_ranges.get(name, (-math.inf, math.inf))
            if ok and name in self.option_choices and value not in self.option_choices[name]:
                choices = ", ".join(map(repr, self.option_choices[name]))
                raise ValueError(f"option {name!r} of {self.name} must be one of {choices}, got {value!r}")
            if not ok or (isinstance(value, Real) and not lo <= value <= hi):
                kind = type(default).__name__
                bounds = f" in [{lo:g}, {hi:g}]" if name in self.option_ranges else ""
                raise ValueError(f"option {name!r} of {self.name} must be a {kind}{bounds}, got {value!r}")
            checked[name] = value
        return FrozenOptions(checked)

    def resolve_options(self, config: "STCConfig") -> dict:
        """Every knob of this method for ``config``: official defaults (for its retention), then
        the config's own."""
        resolved = dict(self.options)
        if self.retention_defaults is not None:
            resolved.update(self.retention_defaults(config.retention))
        resolved.update(config.options or {})
        return resolved

    def counts(self, config: "STCConfig", total: int) -> TokenCounts:
        return self.counts_rule(self, config, total)

    def layer(self, config: "STCConfig", num_layers: int) -> int:
        if config.inner_layer is not None:
            return config.inner_layer
        return self.default_layer(num_layers)

    def compress(self, features: torch.Tensor, scores: torch.Tensor, budget: int, *, grid, config) -> Compressed:
        """Stage 1: ``budget`` of the S*N tokens in features [S, N, D] (scores [S, N]) -> Compressed.

        Checks the inputs once for every method; a budget of every token (or a method without a
        stage 1) returns them all unchanged."""
        s, n, _ = check_stage1_inputs(features, scores, budget)
        if self.stage1 is None or budget == s * n:
            return identity(features)
        return self.stage1(features, scores, budget, grid=grid, config=config, options=self.resolve_options(config))

    @property
    def streams(self) -> bool:
        """Whether this method's stage 1 runs over a long video chunk by chunk (`compressor`)."""
        return self.stream is not None

    def compressor(self, config: "STCConfig", budget: int) -> StreamCompressor:
        """Stage 1's streaming twin of `compress`: a `StreamCompressor` of ``budget`` tokens with
        this method's knobs for ``config``; ``add`` each chunk's features [t, N, D] and scores
        [t, N], then ``finish()`` -> `Compressed`. ValueError for a method that does not stream."""
        if self.stream is None:
            raise ValueError(f"method {self.name!r} does not stream: its stage 1 needs every frame at once")
        return StreamCompressor(budget, **self.stream(config))
