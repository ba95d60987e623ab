"""stc.flops (module stc.flop_count) reproduces the paper's FLOPs table and reads sizes from ids,
configs and models."""

from types import SimpleNamespace

import pytest

from stc.flop_count import ARCHITECTURES, LLMDims, default_inner_layer, flops, llm_dims

OV7B = "llava-hf/llava-onevision-qwen2-7b-ov-hf"
VISUAL = 32 * 196  # 6272
TWO_PERCENT = 125  # round(0.02 * 6272)


def _tera(value):
    return round(value / 1e12, 1)


def test_paper_table_llava_onevision_7b():
    vanilla = flops(OV7B, VISUAL)
    ours = flops(OV7B, TWO_PERCENT, inner_layer=18, inner_keep=0.5)  # 2%/1%
    stage1_only = flops(OV7B, TWO_PERCENT)  # 2% without stage 2
    fastv = flops(OV7B, VISUAL, inner_layer=3, inner_keep=0.02)  # FastV K=3 keeping 2%
    assert (_tera(vanilla), _tera(ours), _tera(stage1_only), _tera(fastv)) == (41.4, 1.1, 1.2, 5.5)
    assert round(100 * ours / vanilla, 1) == 2.6
    assert round(100 * stage1_only / vanilla, 1) == 2.9
    # The lead's reference values, to the third decimal in T.
    assert [round(x / 1e12, 2) for x in (vanilla, ours, stage1_only, fastv)] == [41.42, 1.07, 1.19, 5.50]


def test_formula_by_hand():
    dims = LLMDims(hidden_size=2, intermediate_size=3, num_hidden_layers=1)
    # C(4) = 4*4*2^2 + 2*4^2*2 + 2*4*2*3 = 64 + 64 + 48; decoding R=2: 2*[(16 + 12) + 2*(2*4 + 2*3/2)].
    assert flops(dims, 4, decode_tokens=2) == 176 + 100
    assert flops(dims, 4, decode_tokens=0) == 176


def test_inner_layer_shortens_later_layers():
    dims = LLMDims(64, 128, 6)
    assert flops(dims, 100, inner_layer=None, inner_keep=0.5) == flops(dims, 100)
    assert flops(dims, 100, inner_layer=2, inner_keep=1.0) == flops(dims, 100)
    assert flops(dims, 100, inner_layer=0, inner_keep=0.5) == flops(dims, 50)
    assert flops(dims, 100, inner_layer=6, inner_keep=0.5) == flops(dims, 100)
    # Half up, as stc.config rounds budgets: 0.5 * 125 keeps 63.
    assert flops(dims, 125, inner_layer=0, inner_keep=0.5) == flops(dims, 63)
    # Text tokens are added to n before and after K.
    assert flops(dims, 100, inner_layer=0, inner_keep=0.5, text_tokens=30) == flops(dims, 80)
    assert flops(dims, 100, text_tokens=30) == flops(dims, 130)


def test_default_inner_layer():
    assert default_inner_layer(28) == 18
    assert default_inner_layer(24) == 15
    assert default_inner_layer(36) == 23
    assert default_inner_layer(6) == 4
    # 7 layers: 18/28 * 7 = 4.5 exactly -> half up, the same rule as every token count
    assert default_inner_layer(7) == 5


def test_methods_use_the_same_depth_rule():
    import stc

    config = stc.STCConfig(retention=0.1)
    for layers in range(1, 81):
        assert stc.get_method("stc").layer(config, layers) == default_inner_layer(layers)
        assert stc.get_method("holitom").layer(config, layers) == default_inner_layer(layers)


def test_config_model_and_id_agree():
    from transformers import LlavaOnevisionConfig, Qwen2Config

    qwen2_7b = dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                    num_key_value_heads=4)
    config = LlavaOnevisionConfig(text_config=dict(model_type="qwen2", **qwen2_7b))
    text_config = Qwen2Config(**qwen2_7b)
    wrapper = SimpleNamespace(config=config)  # a loaded model or an stc wrapper
    expected = flops(OV7B, VISUAL)
    for model in (config, text_config, wrapper, SimpleNamespace(config=wrapper), ARCHITECTURES[OV7B]):
        assert flops(model, VISUAL) == expected
    assert llm_dims(config) == LLMDims(3584, 18944, 28)


def test_qwen_vl_config_is_read_through_its_text_config():
    from transformers import Qwen2_5_VLConfig

    config = Qwen2_5_VLConfig(text_config=dict(hidden_size=2048, intermediate_size=11008, num_hidden_layers=36,
                                               num_attention_heads=16, num_key_value_heads=2))
    assert llm_dims(config) == llm_dims("Qwen/Qwen2.5-VL-3B-Instruct")


def test_tiny_ids_match_their_models():
    from stc.models.tiny import TINY_IDS, build_tiny, tiny_config

    hybrid = (0, 1, 2, 4, 5, 6)  # Qwen3.5: linear attention but in every 4th layer
    expected = {"tiny-random/qwen3-vl-moe": LLMDims(64, 2 * 32, 6),  # 2 active experts of width 32
                "tiny-random/qwen3.5": LLMDims(64, 128, 8, hybrid),
                "tiny-random/qwen3.5-moe": LLMDims(64, 2 * 32 + 32, 8, hybrid)}  # + the shared expert
    for name in TINY_IDS:
        assert llm_dims(name) == llm_dims(tiny_config(name)) == expected.get(name, LLMDims(64, 128, 6))
    model, _ = build_tiny(TINY_IDS[0])
    assert flops(model, 1569) == flops(TINY_IDS[0], 1569)


def test_required_ids_are_known():
    for name in [
        "llava-hf/llava-onevision-qwen2-0.5b-ov-hf",
        OV7B,
        "llava-hf/LLaVA-Video-7B-Qwen2-hf",
        "Qwen/Qwen2.5-VL-3B-Instruct",
        "Qwen/Qwen2.5-VL-7B-Instruct",
        "Qwen/Qwen2-VL-7B-Instruct",
    ]:
        assert flops(name, 100) > 0


def test_unknown_id_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown model id") as info:
        flops("someone/some-model", 100)
    assert OV7B in str(info.value) and "tiny-random/qwen2.5-vl" in str(info.value)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(visual_tokens=-1), "visual_tokens"),
        (dict(visual_tokens=1.5), "visual_tokens"),
        (dict(visual_tokens=10, inner_keep=0), "inner_keep"),
        (dict(visual_tokens=10, inner_keep=1.5), "inner_keep"),
        (dict(visual_tokens=10, inner_layer=29), "inner_layer"),
        (dict(visual_tokens=10, inner_layer=-1), "inner_layer"),
        (dict(visual_tokens=10, text_tokens=-3), "text_tokens"),
        (dict(visual_tokens=10, decode_tokens=True), "decode_tokens"),
    ],
)
def test_bad_arguments(kwargs, field):
    with pytest.raises(ValueError, match=field):
        flops(OV7B, **kwargs)


def test_unreadable_model():
    with pytest.raises(ValueError, match="cannot read LLM sizes"):
        flops(object(), 10)


def test_moe_counts_active_experts_and_dense_layers():
    from transformers import Qwen3VLMoeTextConfig

    sparse = Qwen3VLMoeTextConfig(hidden_size=2048, intermediate_size=6144, num_hidden_layers=48, num_experts=128,
                                  num_experts_per_tok=8, moe_intermediate_size=768)
    assert llm_dims(sparse) == llm_dims("Qwen/Qwen3-VL-30B-A3B-Instruct") == LLMDims(2048, 8 * 768, 48)
    # every other layer dense: the mean width (FLOPs are linear in m)
    mixed = Qwen3VLMoeTextConfig(hidden_size=64, intermediate_size=100, num_hidden_layers=4, num_experts=4,
                                 num_experts_per_tok=2, moe_intermediate_size=10, decoder_sparse_step=2)
    assert llm_dims(mixed).intermediate_size == (100 + 20) / 2
    assert flops("Qwen/Qwen3-VL-235B-A22B-Instruct", 1000) > flops("Qwen/Qwen3-VL-8B-Instruct", 1000)


def test_the_function_and_its_module_have_different_names():
    """``stc.flops`` is the function the README documents; its module is ``stc.flop_count``, so
    importing the module never hides (or is hidden by) the function."""
    import stc
    import stc.flop_count

    assert stc.flops is stc.flop_count.flops and callable(stc.flops)
