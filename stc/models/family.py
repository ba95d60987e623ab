"""What one model family must provide (`FamilyAdapter`), and how a user's question becomes
prompt text: checked, and with every special token neutralised.

One subclass per family (`llava_onevision.py`, `qwen2_5_vl.py`, `qwen3_vl.py`, `qwen3_5.py`) holds
everything family-specific: its processor, where features and contribution scores come from, how
many visual tokens a video costs, the prompt layout and the positions of the kept tokens, and its
decoder layers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

import torch

from ..results import Compressed, Encoded
from ..video import Video
from .inner import attention_layer_for


@dataclass
class PromptInputs:
    """What `generate` needs for one prompt, plus where the visual span sits in it."""

    generate_kwargs: dict
    prompt_len: int
    visual_start: int  # first compressed visual token
    visual_end: int  # one past the last compressed visual token (extra tokens follow)
    text_start: int  # first text row after the video (question + assistant prefix)
    # Prompt positions of the visual tokens, in order, where text lies between them (Qwen3-VL's
    # timestamps); None: they are exactly [visual_start, visual_end).
    visual_index: torch.Tensor | None = None

    @property
    def num_visual(self) -> int:
        return self.visual_index.numel() if self.visual_index is not None else self.visual_end - self.visual_start


MAX_QUESTION_CHARS = 2000
ZERO_WIDTH_SPACE = "\u200b"


def check_question(question) -> str:
    """The question, stripped; ValueError for a non-string, empty or over-long question."""
    if not isinstance(question, str) or not question.strip():
        raise ValueError("question must be a non-empty string")
    question = question.strip()
    if len(question) > MAX_QUESTION_CHARS:
        raise ValueError(f"question is too long ({len(question)} characters; at most {MAX_QUESTION_CHARS})")
    return question


class FamilyAdapter:
    """What one model family must provide. Subclasses: one file per family."""

    model_type: str = ""
    # The checkpoint's processor: its transformers class, and which of stc's pure-torch video
    # processors stands in for the torchvision one where torchvision does not import.
    processor_class: str = ""
    video_processor_kind: str = ""
    # Frames encode independently of each other, so a long video may be encoded in chunks
    # (VideoLLM.streams).
    streamable: bool = False

    @property
    def min_inner_layer(self) -> int:
        """The first decoder layer at which the visual span may be shortened (stage 2's K):
        0, or past the layers that still add vision features at full length (DeepStack)."""
        return 0

    def attention_layers(self) -> list[int] | None:
        """The decoder layers with softmax attention, whose text-to-visual attention a stage-2
        strategy can read (None: every layer; Qwen3.5's linear-attention layers have none)."""
        return None

    def reading_layer(self, layer: int, method, *, explicit: bool, low: int = 0) -> int:
        """K = ``layer`` for ``method``, or where some layers have no softmax attention
        (`attention_layers`), the first layer from it whose read layer (K, or K-1 for methods
        reading the previous layer: `attention_layer_for`) has it (else the last one before it);
        an ``explicit`` K reading a linear-attention layer is refused, naming the valid ones (all
        >= ``low``)."""
        allowed = self.attention_layers()
        reads = lambda k: attention_layer_for(k, method.inner_attention)  # noqa: E731
        if allowed is None or reads(layer) in allowed:
            return layer
        valid = [k for k in range(low, len(self.decoder_layers())) if reads(k) in allowed]
        later = [k for k in valid if k >= layer]
        if not explicit and valid:
            return later[0] if later else valid[-1]
        which = "K" if method.inner_attention == "same" else "K-1"
        raise ValueError(
            f"inner_layer {layer} is not valid for {method.name} on {self.model_type}: it reads the attention of "
            f"layer {which}, and only layers {allowed} have softmax attention (the others are linear attention, "
            f"with none to read); valid inner_layer values: {valid}"
        )

    @classmethod
    def load_processor(cls, source: str, **hub_kwargs):
        """The processor of checkpoint ``source``: the checkpoint's own (``AutoProcessor``) where
        torchvision works, else the same processor with the pure-torch video processor."""
        from .processors import load_processor

        return load_processor(source, processor_class=cls.processor_class, video_kind=cls.video_processor_kind,
                              **hub_kwargs)

    def __init__(self, model, processor):
        self.model = model
        self.processor = processor

    def encode(self, video: Video) -> Encoded:
        raise NotImplementedError

    def frame_tokens(self) -> int | None:
        """Visual tokens of one frame when every frame costs the same whatever the video
        (LLaVA-OneVision's fixed grid); None when a frame's count depends on the whole clip (Qwen's
        processor sizes frames by the video's pixel count)."""
        return None

    def visual_tokens(self, video: Video) -> int:
        """Visual tokens the uncompressed model reads for ``video``, counted without encoding it."""
        per_frame = self.frame_tokens()
        if per_frame is None:
            raise NotImplementedError(f"{type(self).__name__} must count its visual tokens")
        return video.num_frames * per_frame

    def prompt_inputs(self, question: str, encoded: Encoded, kept: Compressed,
                      positions: str = "original") -> PromptInputs:
        """The prompt with exactly ``kept``'s visual tokens; ``positions``: "original" (each kept
        token at its uncompressed position) or "contiguous" (the sequence renumbered)."""
        raise NotImplementedError

    def decoder_layers(self) -> torch.nn.ModuleList:
        raise NotImplementedError

    def vision_layers(self) -> torch.nn.ModuleList:
        """The vision encoder's layers (checked for cancellation between them while encoding)."""
        raise NotImplementedError

    @property
    def tokenizer(self):
        return self.processor.tokenizer

    def plain_text(self, text: str) -> str:
        """``text`` as the model must read a user's words: as plain text. Every string the
        tokenizer would read as one added or special token (``<video>``, ``<|video_pad|>``,
        ``<|im_start|>``, ...) and the processor's placeholders get a zero-width space after
        their first character, so they are tokenized as the characters they look like and can
        neither add visual placeholders nor open a turn of another role."""
        # Breaking one marker cannot form another (the space is in none of them): repeat until
        # overlapping occurrences are gone too.
        while self._markers is not None and self._markers.search(text):
            text = self._markers.sub(lambda m: m[0][0] + ZERO_WIDTH_SPACE + m[0][1:], text)
        return text

    @cached_property
    def _markers(self) -> re.Pattern | None:
        """One pattern matching the tokenizer's added and special tokens and the processor's
        placeholders, longest first (None if there are none)."""
        names = {getattr(self.processor, attr, None) for attr in ("video_token", "image_token")}
        names |= {t.content for t in self.tokenizer.added_tokens_decoder.values()}
        names |= set(self.tokenizer.all_special_tokens)
        names = sorted((n for n in names if isinstance(n, str) and len(n) > 1), key=len, reverse=True)
        return re.compile("|".join(map(re.escape, names))) if names else None

    def prompt_ids(self, question: str) -> tuple[list[int], list[int]]:
        """Token ids of the chat template before and after its video placeholder, the question
        (as `plain_text`) in the text after it."""
        question = self.plain_text(question)
        conversation = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": question}]}]
        text = self.processor.apply_chat_template(conversation, add_generation_prompt=True)
        before, after = text.split(self.processor.video_token, 1)
        tok = self.tokenizer
        return tok(before, add_special_tokens=False)["input_ids"], tok(after, add_special_tokens=False)["input_ids"]
