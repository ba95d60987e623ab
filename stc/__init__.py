"""stc: training-free unified spatiotemporal token compression for Video-LLMs.

Public API (see README.md):
    STCConfig, compress_tokens, Compressed          stage 1 (before the LLM), pure functions
    text_aware_scores, merge_into_kept, Merged      stage 2 (inside the LLM), pure functions
    load, VideoLLM, Answer, Stats, Provenance       a Video-LLM that answers with or without stc
    load_video, Video                               decoding and uniform frame sampling
    flops                                           the paper's FLOPs convention
    list_methods, get_method                        the method registry (STCConfig(method=...))
"""

from .compress import Compressed, compress_tokens, dpc_knn, unified_selection
from .config import STCConfig
from .flops import flops
from .merge import Merged, merge_into_kept, text_aware_scores
from .methods import get_method, list_methods
from .models import Answer, OutOfMemory, Provenance, Stats, VideoLLM, load, supported_types
from .video import Video, load_video

__version__ = "0.1.0"

__all__ = [
    "Answer",
    "Compressed",
    "Merged",
    "OutOfMemory",
    "Provenance",
    "STCConfig",
    "Stats",
    "Video",
    "VideoLLM",
    "compress_tokens",
    "dpc_knn",
    "flops",
    "get_method",
    "list_methods",
    "load",
    "load_video",
    "merge_into_kept",
    "supported_types",
    "text_aware_scores",
    "unified_selection",
]
