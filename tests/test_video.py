"""stc.video: uniform sampling of real clips, seeking for long ones, and clear errors."""

import shutil

import numpy as np
import pytest

import stc.video as video_module
import stc.video.readers as readers_module
import stc.video.sizing as sizing_module
import stc.video.stream as stream_module
from stc.video import MAX_FRAMES, Video, load_video, sample_indices

GRADIO_CLIPS = ["a.mp4", "b.mp4", "muted_b.mp4", "b.avi", "world.mp4"]


def _check_video(video, asked, path):
    assert isinstance(video, Video)
    assert video.num_frames == asked == len(video.timestamps) == len(video.frame_indices)
    assert video.frames.dtype == np.uint8 and video.frames.ndim == 4 and video.frames.shape[-1] == 3
    assert video.note is None
    assert np.all(np.diff(video.timestamps) > 0), "timestamps must increase"
    assert video.timestamps[0] >= 0 and video.timestamps[-1] < video.duration
    assert np.all(np.diff(video.frame_indices) > 0)
    assert 0 <= video.frame_indices[0] and video.frame_indices[-1] < video.total_frames
    assert video.fps > 0 and video.source == str(path)


@pytest.mark.parametrize("name", GRADIO_CLIPS)
def test_gradio_clips_give_the_asked_frames(gradio_clip, name):
    path = gradio_clip(name)
    for asked in (8, 32) if name != "a.mp4" else (8,):  # a.mp4 is 1080p: keep it quick
        _check_video(load_video(path, num_frames=asked), asked, path)


def test_sampling_rule_takes_segment_centres():
    assert sample_indices(10, 4).tolist() == [1, 3, 6, 8]
    assert sample_indices(150, 1).tolist() == [75]
    assert sample_indices(6272, 6272).tolist() == list(range(6272))
    assert sample_indices(5, 32).tolist() == [0, 1, 2, 3, 4]


def test_sampled_frames_follow_the_rule(gradio_clip):
    video = load_video(gradio_clip("b.mp4"), 8)
    assert video.total_frames == 150
    assert video.frame_indices.tolist() == sample_indices(150, 8).tolist()
    np.testing.assert_allclose(video.timestamps, video.frame_indices / 30.0, atol=1e-6)


def test_seeking_reader_matches_sequential(gradio_clip, monkeypatch):
    path = gradio_clip("world.mp4")  # 901 frames: read by seeking
    seeking = load_video(path, 16, backend="pyav")
    monkeypatch.setattr(stream_module, "SEQUENTIAL_MAX_FRAMES", 10**9)
    sequential = load_video(path, 16, backend="pyav")
    assert seeking.frame_indices.tolist() == sequential.frame_indices.tolist()
    assert np.array_equal(seeking.frames, sequential.frames)
    np.testing.assert_allclose(seeking.timestamps, sequential.timestamps)


def test_long_clip_is_read_by_seeking(make_clip, frame_level, monkeypatch):
    path = make_clip("long.mp4", 1500, fps=25)

    def no_full_decode(*args, **kwargs):
        raise AssertionError("a long clip must not be decoded front to back")

    monkeypatch.setattr(stream_module, "read_sequential", no_full_decode)
    video = load_video(path, 32, backend="pyav")
    assert video.num_frames == 32 and video.total_frames == 1500 and video.note is None
    assert video.frame_indices.tolist() == sample_indices(1500, 32).tolist()
    assert abs(video.duration - 60.0) < 0.1
    # The frame we got is the frame we asked for (each frame is painted with its own level).
    means = video.frames.reshape(32, -1).mean(axis=1)
    expected = np.array([frame_level(i) for i in video.frame_indices])
    assert np.abs(means - expected).max() < 4  # neighbours differ by 8


def test_one_frame_clip_notes_the_shortfall(make_clip):
    path = make_clip("one.mp4", 1)
    video = load_video(path, 8)
    assert video.num_frames == 1 and video.total_frames == 1
    assert video.note == "video has 1 frame; sampled 1 of 8 asked"
    assert load_video(path, 1).note is None


def test_fewer_frames_than_asked(gradio_clip, make_clip, frame_level):
    video = load_video(gradio_clip("b.mp4"), 200)
    assert video.num_frames == 150 and video.note == "video has 150 frames; sampled 150 of 200 asked"
    short = load_video(make_clip("five.mp4", 5), 32)
    assert short.num_frames == 5 and short.note == "video has 5 frames; sampled 5 of 32 asked"
    means = short.frames.reshape(5, -1).mean(axis=1)
    assert np.abs(means - np.array([frame_level(i) for i in range(5)])).max() < 4


def _truncated(src, dst, fraction):
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


def _corrupted(src, dst):
    data = bytearray(src.read_bytes())
    start = len(data) // 3
    data[start : start + 5000] = bytes((b * 7 + 3) % 256 for b in data[start : start + 5000])
    dst.write_bytes(bytes(data))
    return dst


@pytest.mark.parametrize(
    "case, match",
    [
        ("missing", "not found"),
        ("empty", "empty"),
        ("text", "not a video file"),
        ("audio", "no video stream"),
        ("truncated_moov_last", "corrupt/truncated"),  # b.mp4 keeps its index at the end
        ("truncated_moov_first", "truncated or corrupt"),  # world.mp4 keeps it at the start
        ("truncated_avi", "truncated or corrupt"),
        ("corrupt", "corrupt"),
        ("directory", "not a file"),
    ],
)
def test_bad_files_raise_one_line_value_errors(case, match, tmp_path, gradio_clip, make_audio):
    if case == "missing":
        path = tmp_path / "missing.mp4"
    elif case == "empty":
        path = tmp_path / "empty.mp4"
        path.write_bytes(b"")
    elif case == "text":
        path = tmp_path / "notes.mp4"
        path.write_text("this is plain text, renamed to look like a video\n" * 20)
    elif case == "audio":
        path = make_audio("speech.mp4")
    elif case == "truncated_moov_last":
        path = _truncated(gradio_clip("b.mp4"), tmp_path / "cut.mp4", 0.6)
    elif case == "truncated_moov_first":
        path = _truncated(gradio_clip("world.mp4"), tmp_path / "cut.mp4", 0.5)
    elif case == "truncated_avi":
        path = _truncated(gradio_clip("b.avi"), tmp_path / "cut.avi", 0.5)
    elif case == "corrupt":
        path = _corrupted(gradio_clip("b.mp4"), tmp_path / "corrupt.mp4")
    else:
        path = tmp_path
    with pytest.raises(ValueError, match=match) as info:
        load_video(path, 8, backend="pyav")
    message = str(info.value)
    assert "\n" not in message and len(message) < 300


@pytest.mark.parametrize("bad", [0, -1, MAX_FRAMES + 1, 8.0, True, "8", None])
def test_num_frames_must_be_an_int_in_range(gradio_clip, bad):
    with pytest.raises(ValueError, match="num_frames"):
        load_video(gradio_clip("b.mp4"), bad)


def test_num_frames_limits_accepted(gradio_clip):
    assert load_video(gradio_clip("b.mp4"), np.int64(1)).num_frames == 1
    assert load_video(gradio_clip("b.mp4"), MAX_FRAMES).num_frames == 150


def test_unknown_backend(gradio_clip):
    with pytest.raises(ValueError, match="backend"):
        load_video(gradio_clip("b.mp4"), 8, backend="opencv")


def test_path_like_and_copies(gradio_clip, tmp_path):
    copy = tmp_path / "clip with spaces.avi"
    shutil.copy(gradio_clip("b.avi"), copy)
    assert load_video(copy, 4).num_frames == 4
    assert load_video(str(copy), 4).source == str(copy)


def test_from_frames():
    frames = np.random.default_rng(0).integers(0, 256, (6, 20, 30, 3), dtype=np.uint8)
    video = Video.from_frames(frames, fps=2.0)
    assert video.num_frames == 6 and video.fps == 2.0 and video.duration == 3.0
    np.testing.assert_allclose(video.timestamps, np.arange(6) / 2.0)
    assert video.source is None and video.note is None and video.backend == "memory"
    assert Video.from_frames(list(frames), fps=2.0).content_hash == video.content_hash
    with pytest.raises(ValueError, match="frames"):
        Video.from_frames(frames[..., :2])
    with pytest.raises(ValueError, match="frames"):
        Video.from_frames(frames.astype(np.float32))
    with pytest.raises(ValueError, match="fps"):
        Video.from_frames(frames, fps=0)


def test_content_hash_tracks_content():
    frames = np.zeros((4, 16, 16, 3), np.uint8)
    base = Video.from_frames(frames).content_hash
    assert base == Video.from_frames(frames.copy(), fps=30.0).content_hash  # content only
    changed = frames.copy()
    changed[2, 5, 7, 1] = 1
    assert Video.from_frames(changed).content_hash != base
    assert Video.from_frames(frames[:3]).content_hash != base
    assert len(base) == 32


def test_content_hash_of_real_clip_is_stable(gradio_clip):
    path = gradio_clip("b.mp4")
    assert load_video(path, 8).content_hash == load_video(path, 8).content_hash
    assert load_video(path, 8).content_hash != load_video(path, 9).content_hash


def test_video_prints_short(gradio_clip):
    assert len(repr(load_video(gradio_clip("b.mp4"), 4))) < 300


def test_metadata_for_transformers_processors(gradio_clip):
    from transformers.video_utils import VideoMetadata

    video = load_video(gradio_clip("world.mp4"), 8)
    metadata = VideoMetadata(**video.to_video_metadata())
    assert metadata.total_num_frames == 901 and metadata.fps == pytest.approx(30.0)
    assert metadata.sampled_fps == pytest.approx(8 / 901 * 30.0)
    np.testing.assert_allclose(metadata.timestamps, video.timestamps, atol=1e-6)


def test_4k_frames_are_scaled_down_while_decoding(make_clip):
    path = make_clip("uhd.mp4", 3, size=(3840, 2160))
    video = load_video(path, num_frames=3)
    assert video.frames.shape == (3, 756, 1344, 3)
    full = load_video(path, num_frames=1, max_side=None)
    assert full.frames.shape[1:3] == (2160, 3840)
    with pytest.raises(ValueError, match="max_side"):
        load_video(path, num_frames=1, max_side=0)


def _backends():
    return ["pyav", "decord"] if readers_module.decord_available() else ["pyav"]


@pytest.mark.parametrize("backend", _backends())
@pytest.mark.parametrize("name, asked", [("b.mp4", 40), ("world.mp4", 100)])  # decoded front to back; by seeking
def test_streamed_chunks_are_the_loaded_frames(gradio_clip, backend, name, asked):
    path = gradio_clip(name)
    whole = load_video(path, asked, backend=backend)
    stream = video_module.stream_video(path, asked, chunk=16, backend=backend)
    assert (stream.num_frames, stream.total_frames, stream.fps) == (whole.num_frames, whole.total_frames, whole.fps)
    assert (stream.height, stream.width, stream.backend) == (whole.height, whole.width, backend)
    chunks = list(stream)
    sizes = [c.num_frames for c in chunks]
    assert sizes[:-1] == [16] * (len(sizes) - 1) and 1 <= sizes[-1] <= 16
    assert np.array_equal(np.concatenate([c.frames for c in chunks]), whole.frames)
    assert np.array_equal(np.concatenate([c.frame_indices for c in chunks]), whole.frame_indices)
    assert np.array_equal(stream.timestamps, whole.timestamps)
    assert np.array_equal(stream.frame_indices, whole.frame_indices)
    assert (stream.duration, stream.note) == (whole.duration, whole.note)
    with pytest.raises(ValueError, match="read once"):
        list(stream)


def test_streamed_short_clip_notes_the_shortfall_like_load_video(make_clip):
    path = make_clip("five.mp4", 5)
    stream = video_module.stream_video(path, 32, chunk=2, backend="pyav")
    assert [c.num_frames for c in stream] == [2, 2, 1]
    assert stream.note == load_video(path, 32, backend="pyav").note == "video has 5 frames; sampled 5 of 32 asked"


def test_stream_checks_the_request_and_budget_before_decoding(gradio_clip, monkeypatch):
    path = gradio_clip("b.mp4")
    with pytest.raises(ValueError, match="chunk"):
        video_module.stream_video(path, 8, chunk=0)
    with pytest.raises(ValueError, match="num_frames"):
        video_module.stream_video(path, 0)
    monkeypatch.setattr(sizing_module, "MAX_PIXELS", 100)
    with pytest.raises(ValueError, match="megapixels"):
        video_module.stream_video(path, 8, backend="pyav")


@pytest.mark.skipif(not readers_module.decord_available(), reason="decord is not installed")
def test_decord_failing_mid_file_falls_back_whole_but_not_mid_stream(gradio_clip, monkeypatch):
    path = gradio_clip("b.mp4")
    reference = load_video(path, 40, backend="pyav")
    real = readers_module.read_decord

    def fails_after_one_chunk(*args, **kwargs):
        reader = real(*args, **kwargs)
        yield next(reader)
        yield next(reader)
        raise readers_module.DecordFailed()

    monkeypatch.setattr(stream_module, "read_decord", fails_after_one_chunk)
    whole = load_video(path, 40)  # decord planned, then failed after handing out frames: PyAV
    assert whole.backend == "pyav" and np.array_equal(whole.frames, reference.frames)
    stream = video_module.stream_video(path, 40, chunk=16)
    with pytest.raises(video_module.FramesChanged, match="load_video"):
        list(stream)


def test_take_selects_frames_with_their_times_and_indices():
    frames = np.arange(5 * 2 * 2 * 3, dtype=np.uint8).reshape(5, 2, 2, 3)
    video = Video(frames=frames, timestamps=np.arange(5) * 0.5, fps=2.0, duration=2.5, frame_indices=np.arange(5) * 3)
    part = video.take(slice(1, 3))
    assert np.shares_memory(part.frames, video.frames)  # a slice is a view
    assert part.timestamps.tolist() == [0.5, 1.0] and part.frame_indices.tolist() == [3, 6]
    picked = video.take(np.array([0, 4]))
    assert not np.shares_memory(picked.frames, video.frames)
    assert np.array_equal(picked.frames, frames[[0, 4]]) and picked.frame_indices.tolist() == [0, 12]
    assert (picked.fps, picked.duration) == (video.fps, video.duration)
