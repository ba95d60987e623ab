"""STCConfig validation and stage 2 (text_aware_scores, merge_into_kept)."""

import math

import pytest
import torch

import stc


def test_defaults_are_the_papers():
    c = stc.STCConfig(retention=0.02)
    assert (c.tau, c.cluster_ratio, c.knn_k, c.inner_layer, c.inner_keep, c.text_weight) == (
        0.7,
        0.3,
        7,
        None,
        0.5,
        0.5,
    )
    assert c.budget(32 * 196) == 125
    assert c.budget(10) == 1  # never zero tokens


@pytest.mark.parametrize(
    "field, value",
    [
        ("retention", 0),
        ("retention", -0.1),
        ("retention", 1.5),
        ("retention", math.nan),
        ("retention", "0.1"),
        ("tau", 0),
        ("tau", 1.2),
        ("cluster_ratio", 1.0),
        ("cluster_ratio", -0.1),
        ("knn_k", 0),
        ("knn_k", 2.5),
        ("inner_layer", -1),
        ("inner_keep", 0),
        ("inner_keep", 1.01),
        ("text_weight", 1.5),
        ("text_weight", math.nan),
    ],
)
def test_validation_names_field_and_range(field, value):
    kwargs = {"retention": 0.1, field: value}
    with pytest.raises(ValueError, match=rf"^{field} must .*\[|^{field} must .*\("):
        stc.STCConfig(**kwargs)


def test_replace_revalidates():
    c = stc.STCConfig(retention=0.1)
    assert c.replace(inner_keep=1.0).inner_keep == 1.0
    with pytest.raises(ValueError, match="retention"):
        c.replace(retention=2)


def test_text_aware_scores_combine_attention_and_similarity():
    visual = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    text = torch.tensor([[1.0, 0.0]])
    attn = torch.tensor([[0.1, 0.7, 0.2]])
    only_attn = stc.text_aware_scores(visual, text, attn, text_weight=0.0)
    only_sim = stc.text_aware_scores(visual, text, attn, text_weight=1.0)
    assert int(only_attn.argmax()) == 1
    assert int(only_sim.argmax()) == 0
    both = stc.text_aware_scores(visual, text, attn, text_weight=0.5)
    torch.testing.assert_close(both, 0.5 * only_attn + 0.5 * only_sim)
    assert float(both.min()) >= 0 and float(both.max()) <= 1


def test_text_aware_scores_constant_inputs_do_not_divide_by_zero():
    visual = torch.ones(4, 3)
    out = stc.text_aware_scores(visual, torch.ones(2, 3), torch.full((2, 4), 0.25))
    assert torch.equal(out, torch.zeros(4))


def test_text_aware_scores_shape_check():
    with pytest.raises(ValueError, match="attn"):
        stc.text_aware_scores(torch.ones(4, 3), torch.ones(2, 3), torch.ones(4, 2))


def test_merge_into_kept_keeps_top_and_merges_into_most_similar():
    visual = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1], [0.1, 0.9], [1.0, 0.05]])
    scores = torch.tensor([0.9, 0.8, 0.1, 0.2, 0.3])
    out = stc.merge_into_kept(visual, 2, scores)
    assert out.keep_index.tolist() == [0, 1]
    assert out.assignment.tolist() == [0, 1, 0, 1, 0]
    torch.testing.assert_close(out.tokens[0], visual[[0, 2, 4]].mean(0))
    torch.testing.assert_close(out.tokens[1], visual[[1, 3]].mean(0))


def test_merge_into_kept_full_keep_is_identity_and_order_is_original():
    g = torch.Generator().manual_seed(0)
    visual = torch.randn(10, 4, generator=g)
    scores = torch.rand(10, generator=g)
    full = stc.merge_into_kept(visual, 10, scores)
    assert torch.equal(full.tokens, visual) and full.keep_index.tolist() == list(range(10))
    half = stc.merge_into_kept(visual, 5, scores)
    assert bool((half.keep_index[1:] > half.keep_index[:-1]).all())
    assert set(half.keep_index.tolist()) == set(torch.topk(scores, 5).indices.tolist())
    assert half.tokens.dtype == visual.dtype
