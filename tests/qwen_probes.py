"""What the Qwen families' tests share: the positions every LLM forward was given, and the eager
attention weights of one vision block."""

import sys
from contextlib import contextmanager

import torch


class positions_seen:
    """Records the [3, L] mRoPE position ids of every LLM forward (prefill, then each step)."""

    def __init__(self, model):
        self.rotary = model.model.language_model.rotary_emb
        self.calls: list[torch.Tensor] = []

    def __enter__(self):
        self.handle = self.rotary.register_forward_pre_hook(lambda _m, args: self.calls.append(args[1][:, 0].clone()))
        return self.calls

    def __exit__(self, *exc):
        self.handle.remove()


@contextmanager
def eager_weights(monkeypatch, visual, block):
    """Within the block: the tower ``visual`` runs eager attention, and the attention weights
    [1, H, l, l] of every chunk ``block`` attends are appended to the list yielded."""
    module = sys.modules[type(block.attn).__module__]
    weights, active = [], [False]
    eager = module.eager_attention_forward

    def probe(mod, *args, **kwargs):
        out, w = eager(mod, *args, **kwargs)
        if active[0]:
            weights.append(w)
        return out, w

    monkeypatch.setattr(module, "eager_attention_forward", probe)
    monkeypatch.setattr(visual.config, "_attn_implementation", "eager")
    handles = [block.attn.register_forward_pre_hook(lambda *_: active.__setitem__(0, True)),
               block.attn.register_forward_hook(lambda *_: active.__setitem__(0, False))]
    try:
        yield weights
    finally:
        for h in handles:
            h.remove()


def stock_run(llm, video, question: str, new_tokens: int, *, processor_kwargs: dict | None = None,
              rope_keys: tuple[str, ...] = ("video_grid_thw",), **generate) -> dict:
    """The uncompressed run through stock transformers: inputs, logits, positions [3, L] (the
    model's own `get_rope_index`), the positions every forward of greedy `generate` saw, its
    sequences, per-step logits, cache and decoded text."""
    conv = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": question}]}]
    prompt = llm.processor.apply_chat_template(conv, add_generation_prompt=True)
    inputs = llm.processor(text=prompt, videos=[video.frames], video_metadata=[video.to_video_metadata()],
                           return_tensors="pt", **(processor_kwargs or {}))
    model = llm.model
    with torch.no_grad():
        logits = model(**inputs).logits
    positions, _ = model.model.get_rope_index(inputs["input_ids"], inputs["mm_token_type_ids"],
                                              **{key: inputs[key] for key in rope_keys})
    with positions_seen(model) as seen:
        out = model.generate(**inputs, max_new_tokens=new_tokens, do_sample=False, output_logits=True,
                             return_dict_in_generate=True, **generate)
    new_ids = out.sequences[0, inputs["input_ids"].shape[1]:]
    return dict(inputs=inputs, logits=logits, positions=positions[:, 0], sequences=out.sequences,
                step_logits=out.logits, seen=seen, cache=getattr(out, "cache", None),
                text=llm.processor.tokenizer.decode(new_ids, skip_special_tokens=True).strip())
