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
