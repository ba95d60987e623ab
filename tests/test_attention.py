"""stc.attention's own copies of transformers' two helpers are transformers' helpers (the light
layer writes them out so it loads no model code)."""

import torch
from transformers.models.qwen2 import modeling_qwen2

from stc.attention import repeat_kv, rotate_half


def test_rotate_half_is_transformers():
    x = torch.randn(2, 3, 5, 8)
    assert torch.equal(rotate_half(x), modeling_qwen2.rotate_half(x))


def test_repeat_kv_is_transformers():
    k = torch.randn(2, 2, 5, 4)
    for n_rep in (1, 3):
        assert torch.equal(repeat_kv(k, n_rep), modeling_qwen2.repeat_kv(k, n_rep))
    assert torch.equal(repeat_kv(k, 3), k.repeat_interleave(3, dim=1))
