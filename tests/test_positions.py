"""Position ids of the compressed sequence: each method's official convention by default, and one
switch (`STCConfig.positions`) that forces a single rule, on both families."""

import pytest
import torch

import stc
from stc.models.tiny import TINY_LLAVA_ONEVISION, TINY_QWEN2_5_VL

QUESTION = "What is shown?"


@pytest.fixture(scope="module", params=[TINY_LLAVA_ONEVISION, TINY_QWEN2_5_VL])
def family(request):
    return stc.load(request.param)


def _positions(prep) -> torch.Tensor:
    """[rows, L]: LLaVA's one row, or Qwen's t/h/w rows (row 0 only feeds the mask)."""
    pos = prep.inputs.generate_kwargs["position_ids"]
    return pos if pos.dim() == 2 else pos[1:, 0]


@pytest.mark.parametrize("rule", ["original", "contiguous"])
def test_both_conventions_on_both_families(family, video, rule):
    config = stc.STCConfig(retention=0.05, positions=rule)
    prep = family.prepare(video, QUESTION, config)
    pos = _positions(prep)
    length = prep.inputs.prompt_len
    s, end = prep.inputs.visual_start, prep.inputs.visual_end
    baseline = _positions(family.prepare(video, QUESTION, None))
    if rule == "contiguous":
        assert torch.equal(pos, torch.arange(length).expand_as(pos))
    else:
        # kept tokens at their uncompressed positions; the text before them unchanged
        full = baseline[:, s + prep.kept.source]
        assert torch.equal(pos[:, s:end], full) and torch.equal(pos[:, :s], baseline[:, :s])
        assert not torch.equal(pos, torch.arange(length).expand_as(pos))
    answer = family.answer(video, QUESTION, config=config, max_new_tokens=3)
    assert answer.stats.visual_tokens_stage1 == config.budget(prep.encoded.num_tokens)
    # the rule changes the computation
    other = "original" if rule == "contiguous" else "contiguous"
    prep_other = family.prepare(video, QUESTION, config.replace(positions=other))
    with torch.no_grad(), prep.stage2():
        a = family.model(**prep.inputs.generate_kwargs).logits[0, -1]
    with torch.no_grad(), prep_other.stage2():
        b = family.model(**prep_other.inputs.generate_kwargs).logits[0, -1]
    assert not torch.allclose(a, b)


@pytest.mark.parametrize("name", stc.list_methods())
def test_each_method_defaults_to_its_own_convention_and_the_switch_overrides_it(name):
    method = stc.get_method(name)
    assert method.positions in ("original", "contiguous")
    assert stc.STCConfig(retention=0.1, method=name).position_rule == method.positions
    for rule in ("original", "contiguous"):
        assert stc.STCConfig(retention=0.1, method=name, positions=rule).position_rule == rule


def test_options_are_checked_read_only_and_travel():
    import pickle

    config = stc.STCConfig(retention=0.1)
    with pytest.raises(ValueError, match="has no option"):
        config.replace(options={"nonsense": 1})
    for name in stc.list_methods():
        method = stc.get_method(name)
        for option, default in method.options.items():
            config = stc.STCConfig(retention=0.1, method=name, options={option: default})
            assert config.option(option) == default
            assert pickle.loads(pickle.dumps(config)) == config and hash(config) == hash(config.replace())
            with pytest.raises(TypeError, match="read-only"):
                config.options[option] = default
            with pytest.raises(ValueError, match=option):
                stc.STCConfig(retention=0.1, method=name, options={option: "text"})
