"""Shared fixtures: the real clips shipped with gradio, and small clips written with PyAV."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session")
def gradio_clip():
    """gradio_clip(name) -> Path of a clip in gradio's media_assets/videos.

    Names: a.mp4 (1920x1080, 209 frames), b.mp4 / muted_b.mp4 (480x270, 150 frames),
    b.avi (mpeg4, 150 frames), world.mp4 (480x270, 901 frames, 30 s).
    """
    # find_spec locates the wheel without importing gradio (an import costs seconds).
    spec = importlib.util.find_spec("gradio")
    if spec is None or spec.origin is None:
        pytest.skip("gradio is not installed")
    root = Path(spec.origin).parent / "media_assets" / "videos"

    def clip(name: str) -> Path:
        path = root / name
        if not path.is_file():
            pytest.skip(f"gradio clip {name} is not shipped with this gradio")
        return path

    return clip


def _frame_level(index: int) -> int:
    return (index * 8) % 240 + 8


@pytest.fixture(scope="session")
def frame_level():
    """frame_level(i) -> grey level make_clip paints frame i with (survives lossy coding)."""
    return _frame_level


@pytest.fixture
def make_clip(tmp_path):
    """make_clip(name, num_frames, fps=25, size=(64, 48)) -> Path of an mpeg4 clip.

    Frame i is uniformly grey at frame_level(i), so a decoded frame's mean tells which source
    frame it is (to within a few levels).
    """
    import av

    def make(name: str, num_frames: int, fps: int = 25, size=(64, 48)) -> Path:
        path = tmp_path / name
        width, height = size
        with av.open(str(path), "w") as container:
            stream = container.add_stream("mpeg4", rate=fps)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            for i in range(num_frames):
                pixels = np.full((height, width, 3), _frame_level(i), np.uint8)
                for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        return path

    return make


@pytest.fixture
def make_audio(tmp_path):
    """make_audio(name) -> Path of an audio-only (AAC) file, whatever its extension."""
    import av

    def make(name: str) -> Path:
        path = tmp_path / name
        with av.open(str(path), "w", format="mp4") as container:
            stream = container.add_stream("aac", rate=16000)
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate = 16000
            for i in range(20):
                frame.pts = i * 1024
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        return path

    return make


@pytest.fixture(scope="module")
def llm():
    """The tiny LLaVA-OneVision, one per test module (tests may patch or clear it)."""
    import stc

    return stc.load("tiny-random/llava-onevision")


@pytest.fixture(scope="module")
def video(gradio_clip):
    """8 frames of gradio's world.mp4."""
    import stc

    return stc.load_video(gradio_clip("world.mp4"), num_frames=8)


@pytest.fixture(scope="session")
def sparse_keyframes(tmp_path_factory):
    """Issue 22's clips: {"one": 100,000 frames of 16x16 at 30 fps (55 min, ~5 MB) with a single
    keyframe, "ten": the same with a keyframe every 10,000 frames}, written once per session
    with libx264 (a few seconds each). Frame i is grey at frame_level(i). Their keyframe layout
    is checked here: the tests rely on it."""
    import av

    if "libx264" not in av.codecs_available:
        pytest.skip("this PyAV has no libx264 encoder")
    folder = tmp_path_factory.mktemp("keyframes")
    clips = {}
    for kind, keyint, keyframes in [("one", 10**6, 1), ("ten", 10_000, 10)]:
        path = folder / f"{kind}_keyframe.mp4"
        with av.open(str(path), "w") as container:
            stream = container.add_stream("libx264", rate=30)
            stream.width, stream.height, stream.pix_fmt = 16, 16, "yuv420p"
            stream.options = {"preset": "ultrafast", "g": str(keyint), "keyint_min": str(keyint),
                              "sc_threshold": "0", "bframes": "0"}
            frames = {}  # one frame per grey level, restamped (the same file, 2.5x faster to write)
            for i in range(100_000):
                level = _frame_level(i)
                if level not in frames:
                    planes = np.full((24, 16), 128, np.uint8)
                    planes[:16] = level
                    frames[level] = av.VideoFrame.from_ndarray(planes, format="yuv420p")
                frame = frames[level]
                frame.pts = i
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        with av.open(str(path)) as container:
            found = [i for i, p in enumerate(container.demux(video=0)) if p.size and p.is_keyframe]
        assert found == list(range(0, 100_000, 100_000 // keyframes)), (kind, found[:12])
        clips[kind] = path
    return clips
