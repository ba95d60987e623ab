"""The GPU check (`benchmarks/gpu_check.sh`, `python -m stc.bench --paper`), kept from rotting on CPU.

The check itself needs one CUDA GPU and LLaVA-OneVision-7B at its true size; here the same
script runs the same code at tiny size on CPU, and the 7B builder is checked on the meta device
(no memory, no weights) against the real checkpoint's size and the paper's FLOPs table.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import stc
from stc.bench import llava_onevision_config, random_llava_onevision
from stc.arith import budget_for, round_half_up
from stc.arith import default_inner_layer

ROOT = Path(__file__).resolve().parents[1]
FRAMES = 8
TOKENS = FRAMES * 196  # 1568 visual tokens (+ image_newline, not counted)
COMPRESSING = [m for m in stc.list_methods() if m != "none"]


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


@pytest.fixture(scope="module")
def check(tmp_path_factory):
    """`benchmarks/gpu_check.sh --cpu --bench-only` once: (stdout, header, {run: {column: cell}})."""
    if shutil.which("bash") is None:
        pytest.skip("bash is not available")
    out = tmp_path_factory.mktemp("gpu-check")
    # One thread: on a shared 2-core machine two OpenMP threads fighting other processes make
    # the tiny model ten times slower; the test checks consistency, not speed.
    env = {**os.environ, "STC_GPU_CHECK_OUT": str(out), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--cpu", "--bench-only", "--", "--max-new-tokens", "3"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # Each table is printed and kept on disk: the paper's, then the stage-1 micro-benchmark's and
    # the tiny Qwen3-VL's.
    table = (out / "bench-cpu.md").read_text()
    tables = [table] + [(out / name).read_text() for name in ("stage1-cpu.md", "bench-qwen3-vl-cpu.md")]
    assert done.stdout == "".join(tables)
    assert "stc / HoliTom" in tables[1] and "| stc 2%/1% |" in tables[2]
    assert tables[1].count("floor of any global pairwise pass over 8x196 tokens") == 2  # 2% and 10%
    lines = [line for line in table.splitlines() if line.startswith("| ")]
    header = _cells(lines[0])
    rows = {cells[0]: dict(zip(header, cells)) for cells in map(_cells, lines[1:])}
    return table, header, rows


def test_gpu_check_has_a_row_per_method_config(check):
    stdout, header, rows = check
    names = list(rows)
    assert names[0] == "baseline (100%)" and len(names) == 1 + 2 * len(COMPRESSING)
    for method in COMPRESSING:
        assert sum(name.split()[0] == method for name in names) == 2, method  # one per retention
    assert {"stc 10%/5%", "stc 2%/1%", "stc-stage1 2%", "fastv 2% after K=3", "holitom 2%/1%"} <= set(names)
    assert {"compression (ms)", "prefill (ms)", "TTFT (ms)", "decode tok/s", "peak mem (GiB)"} <= set(header)
    assert "dtype bfloat16, attention sdpa" in stdout  # the GPU check's precision and attention
    assert "wall time:" in stdout and "paper (LLaVA-OneVision-7B" in stdout


def test_gpu_check_stc_rows_have_the_exact_budgets(check):
    _, _, rows = check
    tokens = {name: row["visual tokens (in LLM -> after K)"] for name, row in rows.items()}
    assert tokens["baseline (100%)"] == str(TOKENS)
    for retention, label in ((0.1, "10%/5%"), (0.02, "2%/1%")):
        budget = budget_for(retention, TOKENS)
        assert tokens[f"stc {label}"] == f"{budget} -> {round_half_up(0.5 * budget)}"  # 157 -> 79, 31 -> 16
        assert tokens[f"stc-stage1 {label.split('/')[0]}"] == str(budget)
    assert tokens["stc 2%/1%"] == "31 -> 16"


def _consistent(ratio: str, numerator: str, denominator: str, step: float) -> bool:
    """Whether the printed ``ratio`` (e.g. '2.31x') is numerator/denominator, given that both
    were printed rounded to ``step``."""
    r, a, b = float(ratio.rstrip("x")), float(numerator), float(denominator)
    lo = max(a - step / 2, 0) / (b + step / 2)
    hi = (a + step / 2) / max(b - step / 2, 1e-12)
    return lo - 0.005 <= r <= hi + 0.005


def test_gpu_check_ratios_follow_from_the_measured_numbers(check):
    stdout, _, rows = check
    base = rows["baseline (100%)"]
    vision_ms = float(re.search(r"vision encoding .*?: ([\d.]+) ms", stdout).group(1))
    for name, row in rows.items():
        assert _consistent(row["prefill speed-up"], base["prefill (ms)"], row["prefill (ms)"], 0.1), name
        assert _consistent(row["TTFT speed-up"], base["TTFT (ms)"], row["TTFT (ms)"], 0.1), name
        assert _consistent(row["decode vs base"], row["decode tok/s"], base["decode tok/s"], 0.1), name
        assert _consistent(row["mem vs base"], row["peak mem (GiB)"], base["peak mem (GiB)"], 0.01), name
        flops_share = 100 * float(row["FLOPs (T)"]) / float(base["FLOPs (T)"]) if float(base["FLOPs (T)"]) else None
        assert flops_share is None or abs(float(row["FLOPs vs base"].rstrip("%")) - flops_share) < 5
        # TTFT = vision (measured once, shared) + compression + prefill
        ttft = vision_ms + float(row["compression (ms)"]) + float(row["prefill (ms)"])
        assert abs(float(row["TTFT (ms)"]) - ttft) < 0.2, name
        assert float(row["decode tok/s"]) > 0, name  # every row decoded more than one token
    assert base["prefill speed-up"] == "1.00x" and base["compression (ms)"] == "0.0"
    assert rows["fastv 10% after K=3"]["compression (ms)"] == "0.0"  # FastV prunes inside the LLM


def test_7b_builder_has_the_real_checkpoints_size_and_the_papers_flops():
    llm = random_llava_onevision("7b", device="meta", dtype="bfloat16")  # shapes only, no memory
    model, config = llm.model, llm.config
    count = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
    # llava-hf/llava-onevision-qwen2-7b-ov-hf: 8.03B parameters; its LLM is Qwen2-7B-Instruct (7.62B)
    # with the vocabulary grown by <image>/<video> and padded to 152128; SigLIP-so400m without its
    # last layer and head (0.40B); the 2-layer projector 1152 -> 3584 -> 3584.
    assert count(model) == 8_030_807_584 and round(count(model) / 1e9, 2) == 8.03
    llm_params = count(model.model.language_model) + model.lm_head.weight.numel()
    assert round(llm_params / 1e9, 2) == 7.62
    assert model.lm_head.weight is not model.model.language_model.embed_tokens.weight  # untied, as the 7B
    assert round(count(model.model.vision_tower) / 1e9, 2) == 0.40
    assert count(model.model.multi_modal_projector) == 1152 * 3584 + 3584 + 3584 * 3584 + 3584
    text, vision = config.text_config, config.vision_config
    assert (text.hidden_size, text.intermediate_size, text.num_hidden_layers) == (3584, 18944, 28)
    assert (text.num_attention_heads, text.num_key_value_heads, text.head_dim, text.vocab_size) == (28, 4, 128, 152128)
    assert text.rope_parameters["rope_theta"] == 1e6 and text.max_position_embeddings == 32768
    assert (vision.hidden_size, vision.intermediate_size, vision.num_hidden_layers, vision.num_attention_heads) == (
        1152, 4304, 26, 16)
    assert (vision.image_size, vision.patch_size, vision.vision_use_head) == (384, 14, False)
    assert (config.vision_feature_layer, config.vision_feature_select_strategy) == (-1, "full")
    assert config.projector_hidden_act == "gelu" and len(config.image_grid_pinpoints) == 36
    assert llm.dtype == torch.bfloat16 and config._attn_implementation == "sdpa"
    assert llm.num_layers == 28 and default_inner_layer(28) == 18
    # The paper's FLOPs table for LLaVA-OneVision-7B, 32 x 196 tokens, from this config.
    tera = lambda *args, **kwargs: round(stc.flops(config, *args, **kwargs) / 1e12, 1)  # noqa: E731
    assert tera(6272) == 41.4
    assert tera(125, inner_layer=18, inner_keep=0.5) == 1.1
    assert tera(125) == 1.2
    assert tera(6272, inner_layer=3, inner_keep=125 / 6272) == 5.5
    assert stc.flops(config, 6272) == stc.flops("llava-hf/llava-onevision-qwen2-7b-ov-hf", 6272)


def test_05b_config_is_the_real_checkpoints():
    text = llava_onevision_config("0.5b").text_config
    assert (text.hidden_size, text.intermediate_size, text.num_hidden_layers, text.num_key_value_heads) == (
        896, 4864, 24, 2)
    real = "llava-hf/llava-onevision-qwen2-0.5b-ov-hf"
    assert stc.flops(llava_onevision_config("0.5b"), 6272) == stc.flops(real, 6272)
    with pytest.raises(ValueError, match="unknown size"):
        llava_onevision_config("13b")


def test_gpu_check_says_why_it_cannot_run_without_cuda(tmp_path):
    if torch.cuda.is_available() or shutil.which("bash") is None:
        pytest.skip("a CUDA machine runs the real check")
    env = {**os.environ, "STC_GPU_CHECK_OUT": str(tmp_path), "PYTHON": sys.executable}
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "torch that sees a CUDA GPU" in done.stderr


def test_paper_mode_runs_on_a_synthetic_clip_without_gradio(monkeypatch, capsys):
    from stc import bench

    video = bench.synthetic_video(4)
    assert video.frames.shape == (4, 270, 480, 3) and video.frames.dtype.name == "uint8"
    assert all((video.frames[i] != video.frames[i + 1]).any() for i in range(3))  # it moves
    monkeypatch.setattr(bench, "_gradio_clip_available", lambda: False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # see the check fixture
    try:
        bench.main(["--paper", "--device", "cpu", "--size", "tiny", "--frames", "4",
                    "--methods", "none", "stc", "--retention", "0.02", "--max-new-tokens", "2", "--repeats", "2"])
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert "4 frames of synthetic" in out and "median of 2 interleaved rounds" in out
    names = [_cells(line)[0] for line in out.splitlines() if line.startswith("| ")][1:]
    assert names == ["baseline (100%)", "stc 2%/1%"]


def test_repeated_rows_report_the_median_of_each_column():
    """A row answered in several rounds keeps the median of every number: one slow first answer
    (seen on a GPU, docs/gpu/decode-rounds-h200.txt) cannot set the row's decode speed."""
    from stc.bench import median_stats
    from stc.results import Stats

    def stats(decode: float, prefill: float, new: int) -> Stats:
        return Stats(visual_tokens=627, visual_tokens_stage1=627, visual_tokens_stage2=314, text_tokens=20,
                     new_tokens=new, flops=1.0, flops_baseline=10.0, vision_seconds=0.1, vision_cached=True,
                     compress_seconds=0.01, prefill_seconds=prefill, ttft_seconds=0.2,
                     decode_tokens_per_second=decode, peak_memory_bytes=7, peak_memory_kind="cuda_max_allocated",
                     inner_layer=3, device="cuda:0")

    med = median_stats([stats(7.3, 0.036, 64), stats(35.9, 0.033, 64), stats(24.5, 0.053, 63)])
    assert med.decode_tokens_per_second == 24.5 and med.prefill_seconds == 0.036
    assert med.new_tokens == 64 and isinstance(med.new_tokens, int)
    assert med.vision_cached is True and med.inner_layer == 3 and med.peak_memory_kind == "cuda_max_allocated"
    one = stats(7.3, 0.036, 64)
    assert median_stats([one]) is one

