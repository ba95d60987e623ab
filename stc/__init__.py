"""stc: training-free unified spatiotemporal token compression for Video-LLMs.

Public API (see README.md):
    STCConfig, compress_tokens, Compressed          stage 1 (before the LLM), pure functions
    compress_tokens_st                              stage 1 of the variant stc-st (repeats kept)
    StreamCompressor                                stage 1 over a long video, chunk by chunk
    text_aware_scores, merge_into_kept, Merged      stage 2 (inside the LLM), pure functions
    load, VideoLLM, Answer, Stats, Provenance       a Video-LLM that answers with or without stc
    wrap                                            the same, for a model you loaded yourself
    load_video, Video                               decoding and uniform frame sampling
    flops                                           the paper's FLOPs convention
    list_methods, get_method                        the method registry (STCConfig(method=...))
"""

from .compress import compress_tokens, dpc_knn, unified_selection
from .config import STCConfig
from .flop_count import flops, register_configs
from .merge import merge_into_kept, text_aware_scores
from .methods import get_method, list_methods
from .compress.st import compress_tokens_st
from .results import Answer, Compressed, Merged, OutOfMemory, Provenance, Stats
from .stream import StreamCompressor
from .video import Video, load_video

__version__ = "0.1.0"

# The model layer imports transformers' model classes (seconds): it is imported on first use, so
# `import stc` and the pure functions stay light.
_MODEL_LAYER = ("VideoLLM", "load", "supported_types", "wrap")


def _tiny_config(model_id: str):
    from .models.tiny import tiny_config

    return tiny_config(model_id)


def _tiny_ids() -> list[str]:
    from .models.tiny import TINY_IDS

    return list(TINY_IDS)


# stc.flops("tiny-random/...") counts the offline tiny models too.
register_configs("tiny-random/", _tiny_config, _tiny_ids)


def __getattr__(name: str):
    if name in _MODEL_LAYER:
        from . import models

        return getattr(models, name)
    raise AttributeError(f"module 'stc' has no attribute {name!r}")

__all__ = [
    "Answer",
    "Compressed",
    "Merged",
    "OutOfMemory",
    "Provenance",
    "STCConfig",
    "Stats",
    "StreamCompressor",
    "Video",
    "VideoLLM",
    "compress_tokens",
    "compress_tokens_st",
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
    "wrap",
]
