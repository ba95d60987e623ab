"""Pictures of one compressed answer: the token-retention grid and the cost comparison chart.

`retention_grid` draws every sampled frame with the fate of each of its patches (kept as
selected, merged into a refilled DPC-kNN token, merged away at layer K, dropped) and the number
of tokens the frame sends to the LLM, lightly enough that the picture stays readable when
almost every patch is merged (by default a thin line in the cluster's colour around each refilled
token's region; `CLUSTER_MODES`); a frame that sends none is framed in red, because at ultra-low
retention that is the method working, not a bug. `retention_grids` stacks the grids of several
methods on the same frames, one block each. For hundreds of frames, `retention_page` draws one
page of the grid (`page_ranges`, `slice_provenance`) and `tokens_timeline` every frame at once
as a strip of tokens kept per frame. `cost_chart` puts the baseline and
the compressed run side by side, one panel per cost. Both return PIL images and read only
`stc.Provenance` / `stc.Stats`, so they run anywhere (the app, a notebook, a report).
"""

from .charts import cost_chart, tokens_timeline
from .grid import page_ranges, retention_grid, retention_grids, retention_page, slice_provenance
from .paint import CLUSTER_MODES, STATUS_COLORS, ZERO_TOKENS, cluster_palette, paint_patches

__all__ = ["CLUSTER_MODES", "STATUS_COLORS", "ZERO_TOKENS", "cluster_palette", "cost_chart", "page_ranges",
           "paint_patches", "retention_grid", "retention_grids", "retention_page", "slice_provenance",
           "tokens_timeline"]
