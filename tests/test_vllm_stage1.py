"""The vLLM plugin's pure functions (stc.integrations.vllm.stage1), in the project's .venv (no
vLLM needed); the plugin inside vLLM is tested in tests/vllm (`make test-vllm`)."""

from types import SimpleNamespace

import pytest
import torch

from stc.arith import round_half_up
from stc.attention import received_by_segment
from stc.compress import compress_tokens
from stc.integrations.vllm import ARCHITECTURE, hf_overrides
from stc.integrations.vllm.stage1 import (
    Stage1Options,
    compress_video,
    merge_unit_scores,
    options_from_config,
    video_budget,
    video_positions,
)


def test_budget_is_round_half_up_of_retention_times_tokens():
    # 3 temporal patches of a 12 x 10 patch grid -> 3 x 6 x 5 = 90 merged tokens
    assert video_budget((3, 12, 10), 2, 0.05) == round_half_up(0.05 * 90) == 5
    assert video_budget((3, 12, 10), 2, 0.25) == 23  # 22.5 rounds up
    assert video_budget((1, 2, 2), 2, 0.01) == 1  # never below one token


def test_positions_are_vllms_stock_ones():
    pos = video_positions((3, 4, 6), 2, t_factor=2.5)  # grid 3 x 2 x 3
    assert pos.shape == (18, 3)
    assert pos[:, 0].unique().tolist() == [0, 2, 5]  # floor(t * 2.5)
    assert pos[4].tolist() == [0, 1, 1]  # row-major: t, then h, then w
    assert pos[-1].tolist() == [5, 1, 2]


def test_merge_unit_scores_undo_the_window_order():
    window_index = torch.tensor([2, 0, 3, 1])  # block position i holds merged token window_index[i]
    received = torch.tensor([1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0, 3.0, 3.0, 3.0, 3.0, 4.0, 4.0, 4.0, 5.0])
    scores = merge_unit_scores(received, 4, window_index)
    assert scores.tolist() == [2.0, 4.25, 1.0, 3.0]


def test_received_attention_is_a_distribution_per_segment():
    torch.manual_seed(0)
    q, k = torch.randn(10, 2, 8), torch.randn(10, 2, 8)
    got = received_by_segment(q, k, torch.tensor([0, 4, 10]), 8**-0.5)
    assert got.shape == (10,)
    assert torch.allclose(got[:4].sum(), torch.tensor(1.0)) and torch.allclose(got[4:].sum(), torch.tensor(1.0))
    # a key every query attends to gets the most
    k[6] = q[4:].mean(dim=0) * 20
    assert int(received_by_segment(q, k, torch.tensor([0, 4, 10]), 8**-0.5)[4:].argmax()) == 2


def test_compress_video_appends_stock_positions_and_the_text_offset():
    torch.manual_seed(0)
    grid, merge, options = (3, 4, 6), 2, Stage1Options(retention=0.4)
    embeds, scores = torch.randn(18, 16), torch.rand(18)
    out, source = compress_video(embeds, scores, grid, merge, 2.5, options)
    kept = compress_tokens(embeds.view(3, 6, 16), scores.view(3, 6), 7)
    assert out.shape == (7, 20)
    assert torch.equal(out[:, :16], kept.tokens) and torch.equal(source, kept.source)
    assert torch.equal(out[:, 16:19].long(), video_positions(grid, merge, 2.5)[source])
    assert out[:, 19].unique().tolist() == [6.0]  # largest position (t = 5) + 1, not the grid width


def test_options_come_from_the_config_and_are_checked():
    assert options_from_config(SimpleNamespace(stc_retention=0.1, stc_knn_k=5)) == Stage1Options(0.1, knn_k=5)
    with pytest.raises(ValueError, match="stc_retention"):
        options_from_config(SimpleNamespace())
    with pytest.raises(ValueError, match="tau"):
        hf_overrides(0.1, tau=2.0)
    with pytest.raises(ValueError, match="unknown"):
        hf_overrides(0.1, inner_layer=3)
    assert hf_overrides(0.1) == {"architectures": [ARCHITECTURE], "stc_retention": 0.1}


def test_importing_the_plugin_imports_no_vllm():
    import subprocess
    import sys

    code = "import sys, stc.integrations.vllm; print(any(m == 'vllm' or m.startswith('vllm.') for m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
