"""Long videos: load_video's fps sampling and automatic frame size, STCConfig(max_tokens=...),
and VideoLLM.answer streaming a long video through StreamCompressor in chunks."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import stc
from stc.models.streaming import CHUNK_FRAMES
from stc.stream import WINDOW_FRAMES, StreamCompressor
from stc.video import MAX_PIXELS, MIN_AUTO_SIDE
from stc.video.sizing import auto_side


def test_fps_sampling_with_a_max_frames_cap(gradio_clip):
    clip = gradio_clip("world.mp4")  # 30 s
    video = stc.load_video(clip, fps=2)
    assert video.num_frames == 60
    assert abs(float(video.timestamps[1] - video.timestamps[0]) - 0.5) < 0.05
    assert stc.load_video(clip, fps=30, max_frames=100).num_frames == 100
    with pytest.raises(ValueError, match="fps"):
        stc.load_video(clip, fps=0)
    with pytest.raises(ValueError, match="max_frames"):
        stc.load_video(clip, 100, max_frames=50)
    with pytest.raises(ValueError, match="max_frames"):
        stc.load_video(clip, max_frames=2000)


def test_1024_frames_load_and_many_large_frames_are_scaled_to_fit(gradio_clip):
    video = stc.load_video(gradio_clip("world.mp4"), num_frames=1024)  # 901 frames in the file
    assert video.num_frames == 901 and video.note
    # 1,024 frames of 1920x1080 do not fit MAX_PIXELS at 1344 px: "auto" decodes them smaller
    side = auto_side(1920, 1080, 1024)
    assert MIN_AUTO_SIDE <= side < 1344
    assert 1024 * side * round(side * 1080 / 1920) <= MAX_PIXELS
    assert auto_side(1920, 1080, 8) == 1344


def test_max_tokens_config():
    config = stc.STCConfig(max_tokens=2048)
    assert config.budget(64 * 196) == 2048 and config.budget(1000) == 1000
    assert stc.STCConfig(0.02).budget(1000) == 20
    with pytest.raises(ValueError, match="not both"):
        stc.STCConfig(retention=0.1, max_tokens=10)
    with pytest.raises(ValueError, match="retention .* or max_tokens"):
        stc.STCConfig()
    with pytest.raises(ValueError, match="max_tokens"):
        stc.STCConfig(max_tokens=0)
    with pytest.raises(ValueError, match="max_tokens"):
        stc.STCConfig(max_tokens=2.5)
    with pytest.raises(ValueError, match="holitom"):
        stc.STCConfig(max_tokens=100, method="holitom")
    assert stc.get_method("fastv").counts(stc.STCConfig(max_tokens=30, method="fastv"), 500).after_layer == 30


@pytest.fixture(scope="module")
def long_video(gradio_clip):
    return stc.load_video(gradio_clip("world.mp4"), num_frames=WINDOW_FRAMES + 8, max_side=384)


def test_chunked_encoding_gives_the_features_of_one_pass(llm, long_video):
    """LLaVA-OneVision encodes frames independently: chunks give the one-pass features."""
    head = long_video.take(slice(0, 2 * CHUNK_FRAMES))
    whole = llm.adapter.encode(head)
    parts = [llm.adapter.encode(head.take(slice(a, a + CHUNK_FRAMES))) for a in (0, CHUNK_FRAMES)]
    torch.testing.assert_close(torch.cat([p.features for p in parts]), whole.features, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(torch.cat([p.scores for p in parts]), whole.scores, atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(parts[-1].extra, whole.extra)


def test_long_video_answer_streams_at_a_token_budget(llm, long_video):
    config = stc.STCConfig(max_tokens=300, method="stc-stage1")
    assert llm.streams(long_video, config)
    assert not llm.streams(long_video.take(slice(0, WINDOW_FRAMES)), config)
    assert not llm.streams(long_video, None)
    prep = llm.prepare(long_video, "What happens?", config)
    n = 196
    assert prep.kept.tokens.shape[0] == 300 and prep.encoded.num_tokens == long_video.num_frames * n
    # the prompt carries exactly the kept tokens, each at its original position
    inputs = prep.inputs
    ids = inputs.generate_kwargs["input_ids"][0]
    video_id = llm.config.video_token_id
    assert int((ids == video_id).sum()) == 300 + 1  # + image_newline
    positions = inputs.generate_kwargs["position_ids"][0, inputs.visual_start:inputs.visual_end]
    assert torch.equal(positions, inputs.visual_start + prep.kept.source)
    # the same result as streaming the one-pass features of the whole video
    encoded = llm.adapter.encode(long_video)
    ref = StreamCompressor(300)
    ref.add(encoded.features, encoded.scores)
    ref = ref.finish()
    assert torch.equal(prep.kept.source, ref.source)
    answer = llm.answer(long_video, "What happens?", config=config, max_new_tokens=2)
    assert answer.stats.visual_tokens_stage1 == 300
    assert answer.stats.visual_tokens == long_video.num_frames * n
    assert int(answer.provenance.tokens_per_frame.sum()) == 300
    assert answer.provenance.status.shape == (long_video.num_frames, 14, 14)


def test_a_long_path_is_decoded_chunk_by_chunk_into_the_same_answer(llm, gradio_clip, monkeypatch):
    """answer(path) on a streamed request decodes as it encodes (never load_video), and answers
    exactly as answer(load_video(path)) does."""
    import stc.models.streaming as streaming

    path = gradio_clip("world.mp4")
    config = stc.STCConfig(max_tokens=300, method="stc-stage1")
    eager = llm.answer(stc.load_video(path, 96), "What happens?", config=config, max_new_tokens=4)
    steps = []

    def whole(*args, **kwargs):
        raise AssertionError("a streamed path must not be decoded whole")

    monkeypatch.setattr(streaming, "load_video", whole)
    lazy = llm.answer(path, "What happens?", config=config, num_frames=96, max_new_tokens=4, progress=steps.append)
    assert any(s.startswith("decoding, encoding and compressing 96 frames") for s in steps), steps
    assert lazy.text == eager.text and lazy.notes == eager.notes
    assert lazy.stats.visual_tokens == eager.stats.visual_tokens == 96 * 196
    assert lazy.stats.visual_tokens_stage1 == eager.stats.visual_tokens_stage1 == 300
    assert np.array_equal(lazy.provenance.status, eager.provenance.status)
    assert np.array_equal(lazy.provenance.tokens_per_frame, eager.provenance.tokens_per_frame)
    assert np.array_equal(lazy.provenance.timestamps, eager.provenance.timestamps)


_ANSWER_MEMORY_SCRIPT = """
import json, re, sys, torch, stc, stc.video.stream
torch.set_num_threads(1)
if sys.argv[2] == "pyav":
    stc.video.stream.decord_available = lambda: False
def status(key):
    return int(re.search(key + r":\\s+(\\d+) kB", open("/proc/self/status").read()).group(1)) * 1024
llm = stc.load("tiny-random/llava-onevision")
config = stc.STCConfig(max_tokens=300, method="stc-stage1")
path = sys.argv[1]
runs = []
for frames in (352, 96, 352):  # the first: a warm-up at the largest count
    open("/proc/self/clear_refs", "w").write("5")  # reset the peak to the present RSS
    base = status("VmRSS")
    answer = llm.answer(path, "What happens?", config=config, num_frames=frames, max_new_tokens=1)
    assert answer.provenance.status.shape[0] == frames
    runs.append((frames, base, status("VmHWM") - base))
print(json.dumps({"runs": runs, "end": status("VmRSS")}))
"""


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="peak RSS is reset through Linux /proc")
def test_answer_memory_does_not_grow_with_frames(gradio_clip):
    """Decoded frames of world.mp4 (480x270 uint8) are 0.39 MB each: held whole, the 256 more
    frames at 352 than at 96 would take 95 MiB more (measured: answer(load_video(...)) peaks
    515 MiB over its start at 768 frames, 236 MiB at 256). Streamed, the peak does not grow with
    the frames: after a warm-up at 352, measured 102-111 MiB over the start at 96 and 352.
    The warm-up is needed: the first call at a larger count than any before leaves the process
    some 30-45 MiB larger for good (96 -> 352 -> 608 frames: +30, +40 MiB after malloc_trim),
    allocator fragmentation from decoding and encoding interleaved (no Python object grows under
    tracemalloc; encoding preloaded frames leaves nothing), which a repeat does not add to.
    Large allocations are mmapped and returned at once (MALLOC_*), so RSS tracks live memory.
    PyAV decodes here: with decord the peak is as flat but noisier (some 170-420 MiB whatever
    the count)."""
    backend = "pyav"
    path = gradio_clip("world.mp4")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MALLOC_MMAP_THRESHOLD_": str(2**20), "MALLOC_TRIM_THRESHOLD_": "0"}
    res = subprocess.run([sys.executable, "-c", _ANSWER_MEMORY_SCRIPT, str(path), backend], capture_output=True,
                         text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    (_, warm, _), (_, after_warm_up, peak_96), (_, _, peak_352) = [
        (frames, base / 2**20, peak / 2**20) for frames, base, peak in out["runs"]
    ]
    end = out["end"] / 2**20
    print(f"{backend}: peak RSS growth of answer(), MiB: 96 frames {peak_96:.1f}, 352 frames {peak_352:.1f}; "
          f"RSS {warm:.1f} at the start, {after_warm_up:.1f} after the warm-up, {end:.1f} at the end")
    held = 256 * 270 * 480 * 3 / 2**20  # 95 MiB: the 256 more frames, if decoded whole
    assert peak_352 - peak_96 < held / 4
    # calls at counts already seen keep nothing (measured 3-8 MiB; 352 frames kept: 130 MiB)
    assert end - after_warm_up < held / 4
