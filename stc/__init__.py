"""stc: training-free unified spatiotemporal token compression for Video-LLMs.

Public API (see README.md):
    STCConfig, compress_tokens, Compressed  -- stage 1 (before the LLM)
    text_aware_scores, merge_into_kept, Merged  -- stage 2 (inside the LLM)
"""

from .compress import Compressed, compress_tokens, dpc_knn, unified_selection
from .config import STCConfig
from .merge import Merged, merge_into_kept, text_aware_scores

__version__ = "0.1.0"

__all__ = [
    "Compressed",
    "Merged",
    "STCConfig",
    "compress_tokens",
    "dpc_knn",
    "merge_into_kept",
    "text_aware_scores",
    "unified_selection",
]
