"""LLaVA-OneVision (and LLaVA-Video in HF format): the family adapter.

Features: SigLIP -> projector -> bilinear 27x27 -> 14x14 per frame (196 tokens) + ONE
`image_newline` per video, via the model's own `get_video_features`. Scores: SigLIP has no CLS
token, so a token's contribution is the mean attention it RECEIVES in the last encoder layer
used for features (heads and queries averaged), recomputed from that layer's q/k by a hook and
resized to the feature grid exactly as the model resizes its features (shared/method.md).
Positions are 1D: kept tokens keep ``prefix + flat index``, the newline and the question keep
theirs as if nothing had been removed.
"""

from __future__ import annotations

import math
import time

import torch
from transformers.modeling_outputs import BaseModelOutputWithPooling

from ..attention import attention_received
from ..compress import Compressed
from ..results import Encoded
from ..video import Video
from .family import FamilyAdapter, PromptInputs


# Frames the video processor converts at once (see LlavaOnevisionAdapter._pixels).
PROCESS_FRAMES = 16


class LlavaOnevisionAdapter(FamilyAdapter):
    model_type = "llava_onevision"
    processor_class = "LlavaOnevisionProcessor"
    video_processor_kind = "llava_onevision"
    # SigLIP, the projector and the pooling work frame by frame; the newline is one parameter.
    streamable = True

    @property
    def _core(self):
        return self.model.model

    def decoder_layers(self):
        return self._core.language_model.layers

    def vision_layers(self):
        tower = self._core.vision_tower
        return getattr(tower, "vision_model", tower).encoder.layers

    def _score_layer(self):
        """The encoder layer whose output the features are taken from."""
        layers = self.vision_layers()
        f = self.model.config.vision_feature_layer
        if not isinstance(f, int):
            f = f[-1]  # several layers concatenated: score with the deepest
        hidden_index = f if f >= 0 else len(layers) + 1 + f
        if hidden_index < 1:
            raise NotImplementedError("vision_feature_layer selects the embeddings: no attention to score with")
        return layers[hidden_index - 1]

    def _pixels(self, frames) -> torch.Tensor:
        """The processor's pixel values [1, T, 3, 384, 384] of ``frames``, PROCESS_FRAMES frames
        at a time: it works frame by frame, so the result is the same, and its intermediates
        (a tensor copy of the frames, float copies at 384 px) are a chunk's, not every frame's
        (64 frames of 1344 x 1344: 680 MiB at once, 300 MiB in chunks of 16).
        The frames are already sampled (a checkpoint's config may turn the processor's own
        sampling on: it must not sample again)."""
        pixels = None
        for start in range(0, len(frames), PROCESS_FRAMES):
            part = self.processor.video_processor(videos=[frames[start : start + PROCESS_FRAMES]],
                                                  do_sample_frames=False, return_tensors="pt")["pixel_values_videos"]
            if pixels is None:
                pixels = part.new_empty((part.shape[0], len(frames), *part.shape[2:]))
            pixels[:, start : start + part.shape[1]] = part
        return pixels

    @torch.no_grad()
    def encode(self, video: Video) -> Encoded:
        model, config = self.model, self.model.config
        pixels = self._pixels(video.frames).to(model.device, model.dtype)
        received: list[torch.Tensor] = []

        def hook(attn, args, kwargs):
            hidden = args[0] if args else kwargs["hidden_states"]
            shape = (*hidden.shape[:-1], -1, attn.head_dim)
            q = attn.q_proj(hidden).view(shape).transpose(1, 2)
            k = attn.k_proj(hidden).view(shape).transpose(1, 2)
            mask = kwargs.get("attention_mask", args[1] if len(args) > 1 else None)
            received.append(attention_received(q, k, attn.scale, mask if isinstance(mask, torch.Tensor) else None))

        sync = torch.cuda.synchronize if pixels.device.type == "cuda" else (lambda: None)
        sync()
        t0 = time.perf_counter()
        handle = self._score_layer().self_attn.register_forward_pre_hook(hook, with_kwargs=True)
        try:
            out = self._core.get_video_features(pixel_values_videos=pixels, return_dict=True)
        finally:
            handle.remove()
        pooled = out.pooler_output[0]  # [T * N + 1, D]
        scores = torch.cat(received)  # [T, P] over encoder patches
        if config.vision_feature_select_strategy == "default":
            scores = scores[:, 1:]
        side = int(math.isqrt(scores.shape[1]))
        grid = (math.ceil(side / 2), math.ceil(side / 2))
        # resize exactly as apply_pooling resizes the features
        scores = torch.nn.functional.interpolate(scores.view(-1, 1, side, side), size=grid, mode="bilinear")
        frames = pixels.shape[1]
        n = grid[0] * grid[1]
        features = pooled[:-1].reshape(frames, n, -1)
        sync()
        return Encoded(
            features=features,
            scores=scores.reshape(frames, n).float(),
            extra=pooled[-1:],
            grid=grid,
            frames_per_slot=1,
            vision_seconds=time.perf_counter() - t0,
            timestamps=video.timestamps,
        )

    def frame_tokens(self) -> int:
        """A fixed grid per frame, from the vision config (196 at 384 px): the pooled side is half
        the patch grid's, rounded up, as ``apply_pooling`` resizes."""
        vision = self.model.config.vision_config
        side = vision.image_size // vision.patch_size
        return math.ceil(side / 2) ** 2

    def prompt_inputs(self, question: str, encoded: Encoded, kept: Compressed,
                      positions: str = "original") -> PromptInputs:
        ids_before, ids_after = self.prompt_ids(question)
        device = self.model.device
        n_kept = kept.tokens.shape[0]
        n_extra = 0 if encoded.extra is None else encoded.extra.shape[0]
        s, total = len(ids_before), encoded.num_tokens
        video_id = self.model.config.video_token_id
        input_ids = torch.tensor([ids_before + [video_id] * (n_kept + n_extra) + ids_after], device=device)
        if positions == "contiguous":  # the compressed sequence renumbered, as LLaVA's own code does
            positions = torch.arange(input_ids.shape[1], device=device)[None]
        else:
            positions = torch.cat(
                [
                    torch.arange(s, device=device),
                    s + kept.source.to(device),
                    torch.arange(s + total, s + total + n_extra + len(ids_after), device=device),
                ]
            )[None]
        features = kept.tokens if encoded.extra is None else torch.cat([kept.tokens, encoded.extra])
        generate_kwargs = dict(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            position_ids=positions,
            mm_encoder_outputs={"video": BaseModelOutputWithPooling(pooler_output=features[None])},
        )
        return PromptInputs(
            generate_kwargs=generate_kwargs,
            prompt_len=input_ids.shape[1],
            visual_start=s,
            visual_end=s + n_kept,
            text_start=s + n_kept + n_extra,
        )
