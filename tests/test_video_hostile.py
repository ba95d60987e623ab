"""Hostile video files (issues 11, 22): memory bounded by construction, limits that hold without
headers, decoding bounded in time and stoppable.

Peak memory of `load_video` is measured in a fresh process (RSS growth, Linux /proc) on an
8000x8000 clip and a 4K 64-frame clip with each backend; a request over the pixel budget is
refused before decoding. Files whose header has no duration (a raw H.264 stream named .mp4, a
live-mode Matroska) are measured from their packets, so the app's 60-minute check holds; one
that cannot be measured in time is refused. A 55-minute clip with one keyframe (or one per
10,000 frames) is decoded in one pass, not once per sampled frame; decoding stops at its time
budget with one line, and when its caller says stop. Every refusal is followed by a good request.
"""

import json
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import stc.video as video_module
import stc.video.header as header_module
import stc.video.readers as readers_module
import stc.video.sizing as sizing_module
import stc.video.stream as stream_module
from stc.video import load_video, probe, sample_indices

ROOT = Path(__file__).resolve().parent.parent
GIB = 2**30
MEMORY_LIMIT = 1.5 * GIB  # RSS growth of one load_video call
WATCHDOG = 3 * GIB  # a child past this RSS is killed at once (the old decord path went to 8 GB)


def _level(index: int) -> int:
    return (index * 8) % 240 + 8


# --- clips, written once per session ------------------------------------------------------------


def _repeated_intra_clip(path: Path, num_frames: int, size) -> Path:
    """An mpeg4 clip of ``num_frames`` copies of one flat intra frame: huge frames, made in a
    second and a few MB on disk (encoding 8000x8000 frames one by one takes far longer)."""
    import av

    width, height = size
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        planes = np.full((height * 3 // 2, width), 128, np.uint8)
        planes[:height] = 100
        frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
        (packet,) = list(stream.encode(frame)) + list(stream.encode())
        data = bytes(packet)
        for i in range(num_frames):
            copy = av.Packet(data)
            copy.pts = copy.dts = i
            copy.time_base, copy.stream, copy.is_keyframe = packet.time_base, stream, True
            container.mux(copy)
    return path


@pytest.fixture(scope="session")
def huge_clips(tmp_path_factory):
    """{"8000x8000": 8 frames, "4k": 64 frames at 3840x2160, "1344": 128 frames at 1344x1344},
    generated once."""
    folder = tmp_path_factory.mktemp("huge")
    return {
        "8000x8000": _repeated_intra_clip(folder / "square8000.mp4", 8, (8000, 8000)),
        "4k": _repeated_intra_clip(folder / "uhd64.mp4", 64, (3840, 2160)),
        "1344": _repeated_intra_clip(folder / "square1344.mp4", 128, (1344, 1344)),
    }


def _write(target, fmt: str, codec: str, pts: list[int], rate: int = 1, size=(16, 16), **options):
    """Frames 16x16 grey at _level(i), stamped ``pts``, to a path or a file object."""
    import av

    width, height = size
    with av.open(str(target) if isinstance(target, Path) else target, "w", format=fmt, options=options) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if codec == "libx264":
            stream.options = {"preset": "ultrafast", "tune": "zerolatency"}
        for i, stamp in enumerate(pts):
            planes = np.full((height * 3 // 2, width), 128, np.uint8)
            planes[:height] = _level(i)
            frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
            frame.pts = stamp
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return target


@pytest.fixture(scope="session")
def headerless(tmp_path_factory):
    """Two-hour files whose header has no duration (checked here, since the tests rely on it):
    "raw": a raw Annex-B H.264 stream named .mp4, 7200 frames of 16x16 at 1 fps (its packets
    carry no timestamps); "live": a live-mode Matroska (no duration, no cues), 5 frames stamped
    0, 1, 2, 3 and 7199 s."""
    import av

    folder = tmp_path_factory.mktemp("headerless")
    if "libx264" not in av.codecs_available:
        pytest.skip("this PyAV has no libx264 encoder")
    clips = {
        "raw": _write(folder / "raw_h264.mp4", "h264", "libx264", list(range(7200))),
        "live": _write(folder / "live.mkv", "matroska", "mpeg4", [0, 1, 2, 3, 7199], live="1"),
    }
    for path in clips.values():
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            assert stream.duration is None and container.duration is None, f"{path.name} has a duration"
    return clips


# --- 1. memory bounded by construction ----------------------------------------------------------

_CHILD = textwrap.dedent(
    """
    import importlib.util, json, re, sys
    path, backend, num_frames = sys.argv[1], sys.argv[2], int(sys.argv[3])
    def status(key):
        return int(re.search(key + r":\\s+(\\d+) kB", open("/proc/self/status").read()).group(1)) * 1024
    # stc/video/ alone (stc's package imports torch and transformers: seconds, and not decoding);
    # its modules import only each other.
    package = sys.argv[4]
    spec = importlib.util.spec_from_file_location("stc_video", package + "/__init__.py",
                                                  submodule_search_locations=[package])
    video = sys.modules["stc_video"] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(video)
    import numpy, av
    if backend == "decord":
        import decord
    try:  # reset the peak to the present RSS (Linux >= 4.0)
        open("/proc/self/clear_refs", "w").write("5")
        base = status("VmRSS")
    except OSError:
        base = status("VmHWM")
    loaded = video.load_video(path, num_frames, backend=backend)
    print(json.dumps({"growth": status("VmHWM") - base, "shape": list(loaded.frames.shape),
                      "backend": loaded.backend}))
    """
)


def _peak_growth(path: Path, backend: str, num_frames: int) -> dict:
    """RSS growth of one load_video call in a fresh process; the child is killed past WATCHDOG."""
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(path), backend, str(num_frames), str(ROOT / "stc" / "video")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline, peak = time.monotonic() + 120, 0
    while child.poll() is None:
        try:
            status = Path(f"/proc/{child.pid}/status").read_text()
            peak = max(peak, int(status.split("VmRSS:")[1].split()[0]) * 1024)
        except (OSError, IndexError):
            pass
        if peak > WATCHDOG or time.monotonic() > deadline:
            child.kill()
            child.wait()
            pytest.fail(f"load_video({path.name}, backend={backend!r}) passed {peak / GIB:.1f} GiB of RSS "
                        "or 120 s; killed")
        time.sleep(0.02)
    out, err = child.communicate()
    assert child.returncode == 0, err[-2000:]
    return json.loads(out.strip().splitlines()[-1])


def _backends():
    try:
        import decord  # noqa: F401
    except Exception:
        return ["pyav"]
    return ["pyav", "decord"]


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="RSS is read from Linux /proc")
@pytest.mark.parametrize("clip, num_frames, shape", [("8000x8000", 8, (8, 1344, 1344, 3)),
                                                     ("4k", 64, (64, 756, 1344, 3))])
def test_peak_memory_is_bounded_on_both_backends(huge_clips, clip, num_frames, shape):
    growth = {}
    for backend in _backends():
        result = _peak_growth(huge_clips[clip], backend, num_frames)
        assert result["backend"] == backend and tuple(result["shape"]) == shape
        growth[backend] = result["growth"]
        print(f"load_video({clip}, {num_frames} frames, backend={backend!r}): "
              f"peak RSS growth {growth[backend] / 2**20:.0f} MiB")
        assert growth[backend] < MEMORY_LIMIT, f"{backend}: {growth[backend] / 2**20:.0f} MiB"
    if len(growth) == 2:
        assert max(growth.values()) < 2 * min(growth.values()), growth


# The app's own memory (issue 22): peak RSS growth of one request, in a fresh process serving the
# app on the tiny model, after one warm-up request on that tab (`_APP_CHILD`). Measured so on a
# 2-core CPU (README "Limits and bad input"): /run 64 frames of 4K +605 MiB, of 8000x8000
# +1303 MiB, of 1344x1344 +972-977 MiB; compare (5 methods) 64 of 4K +556 MiB; /long 128 of 4K
# +817 MiB, of 1344x1344 +1268-1354 MiB (runs vary by ~0.1 GiB). The test reads 1344x1344 frames:
# the largest the app keeps (its 1344 px working size) and cheap to decode; the decoder's own
# share for huge frames (+330 MiB at 8000x8000) is bounded by test_peak_memory_is_bounded_on_both_backends.
APP_MEMORY_LIMIT = 1.5 * GIB

_APP_CHILD = textwrap.dedent(
    r"""
    import json, os, re, sys
    root, clip, tab, frames = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    sys.path.insert(0, os.path.join(root, "tests"))
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import httpx, torch
    torch.set_num_threads(1)
    from test_app import CLIP, import_app, run_args, serving
    def status(key):
        return int(re.search(key + r":\s+(\d+) kB", open("/proc/self/status").read()).group(1)) * 1024
    def upload(url, path):
        r = httpx.post(url + "gradio_api/upload", files={"files": (os.path.basename(path), open(path, "rb").read())},
                       timeout=120)
        return {"path": r.json()[0], "meta": {"_type": "gradio.FileData"}}
    def call(url, data):
        with httpx.Client(base_url=url, timeout=600) as http:
            event = http.post("gradio_api/call/" + tab, json={"data": data}).json()["event_id"]
            stream = http.get("gradio_api/call/" + tab + "/" + event).text
        assert "event: complete" in stream, stream[-800:]
    def request(video, n):
        if tab == "long":
            return [video, "What is shown?", "tiny-random/llava-onevision", 2048, n, 8]
        data = run_args(question="What is shown?", frames=n)
        data[0] = video
        if tab == "compare":
            data[5] = ["stc", "fastv", "visionzip", "fastvid", "holitom"]
        return data
    with serving(import_app()) as url:
        call(url, request(upload(url, str(CLIP)), 16 if tab == "long" else 8))  # warm-up
        video = upload(url, clip)
        try:  # reset the peak to the present RSS (Linux >= 4.0)
            open("/proc/self/clear_refs", "w").write("5")
            base = status("VmRSS")
        except OSError:
            base = status("VmHWM")
        call(url, request(video, frames))
        growth = status("VmHWM") - base
    print(json.dumps({"growth": growth}))
    """
)


APP_CASES = {"run": 64, "long": 128}


@pytest.fixture(scope="module")
def app_peaks(huge_clips, tmp_path_factory):
    """{tab: (returncode, stdout, stderr, watched peak RSS)}: one fresh app process per case of
    `APP_CASES`, run at the same time (each measures its own RSS, one torch thread each: on two
    cores they take the time of one). Their output goes to files, so a child that says much
    cannot block on a full pipe. A child past 2 x WATCHDOG of RSS or 600 s is killed."""
    logs = tmp_path_factory.mktemp("app-peaks")
    children = {}
    for tab, frames in APP_CASES.items():
        with open(logs / f"{tab}.out", "w") as out, open(logs / f"{tab}.err", "w") as err:
            children[tab] = subprocess.Popen(
                [sys.executable, "-c", _APP_CHILD, str(ROOT), str(huge_clips["1344"]), tab, str(frames)],
                stdout=out, stderr=err, text=True,
            )
    deadline, peak, killed = time.monotonic() + 600, dict.fromkeys(children, 0), set()
    while any(child.poll() is None for child in children.values()):
        for tab, child in children.items():
            if child.poll() is not None:
                continue
            try:
                rss = int(Path(f"/proc/{child.pid}/status").read_text().split("VmRSS:")[1].split()[0]) * 1024
                peak[tab] = max(peak[tab], rss)
            except (OSError, IndexError):
                pass
            if peak[tab] > 2 * WATCHDOG or time.monotonic() > deadline:
                child.kill()
                child.wait()
                killed.add(tab)
        time.sleep(0.05)
    return {tab: (None if tab in killed else child.returncode, (logs / f"{tab}.out").read_text(),
                  (logs / f"{tab}.err").read_text(), peak[tab]) for tab, child in children.items()}


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="RSS is read from Linux /proc")
@pytest.mark.parametrize("tab, frames", APP_CASES.items())
def test_app_peak_memory_per_request_is_bounded(app_peaks, tab, frames):
    """The worst cases of the app on a CPU: 64 frames on /run, 128 (the CPU cap) on /long, of
    frames kept at the largest working size."""
    returncode, out, err, peak = app_peaks[tab]
    if returncode is None:
        pytest.fail(f"the app on /{tab} passed {peak / GIB:.1f} GiB of RSS or 600 s; killed")
    assert returncode == 0, err[-3000:]
    growth = json.loads(out.strip().splitlines()[-1])["growth"]
    print(f"/{tab}, {frames} frames of 1344x1344: peak RSS growth {growth / 2**20:.0f} MiB")
    assert growth < APP_MEMORY_LIMIT, f"{growth / 2**20:.0f} MiB"


def _no_decoding(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a request over the budget must be refused before decoding")

    for reader in ("read_sequential", "read_seeking", "read_decord"):
        monkeypatch.setattr(stream_module, reader, refuse)


@pytest.mark.parametrize("backend", _backends())
def test_pixel_budget_is_checked_before_decoding_then_serves(huge_clips, monkeypatch, backend):
    path = huge_clips["8000x8000"]
    with monkeypatch.context() as patch:
        _no_decoding(patch)
        with pytest.raises(ValueError) as err:
            load_video(path, 8, backend=backend, max_side=None)  # 8 x 8000 x 8000 x 3 bytes: 1.5 GB
        assert str(err.value) == (
            "8 frames of 8000x8000 are 512 megapixels; load_video holds at most 268 "
            "(ask for fewer frames or a smaller max_side)"
        )
        patch.setattr(sizing_module, "MAX_FRAME_PIXELS", 2**25)
        with pytest.raises(ValueError) as err:
            load_video(path, 1, backend=backend)
        assert str(err.value) == (
            f"cannot read video {path}: frames are 8000x8000 (64 megapixels); "
            "at most 34 megapixels per frame are decoded"
        )
    good = load_video(path, 2, backend=backend)
    assert good.frames.shape == (2, 1344, 1344, 3) and good.backend == backend


def test_a_header_that_understates_the_frame_size_cannot_grow_the_frames(tmp_path):
    """Raw MPEG-4: 64x48 in the header and for 4 frames, then 4 frames at 640x480."""
    import io

    import av

    def elementary(size):
        buffer = io.BytesIO()
        _write(buffer, "m4v", "mpeg4", [0, 1, 2, 3], rate=25, size=size)
        return buffer.getvalue()

    path = tmp_path / "grows.mp4"
    path.write_bytes(elementary((64, 48)) + elementary((640, 480)))
    with av.open(str(path)) as container:
        sizes = {(frame.width, frame.height) for frame in container.decode(video=0)}
    assert sizes == {(64, 48), (640, 480)}
    info = probe(path)
    assert (info.width, info.height, info.frames) == (64, 48, 8)
    video = load_video(path, 8)
    assert video.frames.shape == (8, 48, 64, 3)


# --- 2. limits that hold without headers --------------------------------------------------------


@pytest.mark.parametrize("kind, frames", [("raw", 7200), ("live", 5)])
def test_probe_measures_a_length_missing_from_the_header(headerless, kind, frames):
    start = time.perf_counter()
    info = probe(headerless[kind])
    assert info.duration == pytest.approx(7200, abs=1) and info.frames == frames
    assert info.fps == pytest.approx(1.0) and (info.width, info.height) == (16, 16)
    assert time.perf_counter() - start < 3


def test_headerless_two_hours_are_sampled_over_two_hours(headerless):
    video = load_video(headerless["raw"], 8)
    assert video.total_frames == 7200 and video.note is None
    assert video.frame_indices.tolist() == sample_indices(7200, 8).tolist()
    np.testing.assert_allclose(video.timestamps, video.frame_indices, atol=1e-6)  # 1 fps
    assert video.duration == pytest.approx(7200, abs=1)
    live = load_video(headerless["live"], 8)
    assert live.num_frames == 5 and live.timestamps[-1] == pytest.approx(7199)


def test_checking_then_loading_a_headerless_video_counts_its_packets_once(headerless, tmp_path, monkeypatch):
    """What an app does (probe for its limits, then load) reads a header-less file's packets
    once; a changed file is measured again."""
    import shutil

    counted = []
    real = header_module.count_packets
    monkeypatch.setattr(header_module, "count_packets", lambda *a, **k: counted.append(1) or real(*a, **k))
    path = tmp_path / "raw.mp4"
    shutil.copy(headerless["raw"], path)
    assert probe(path).duration == pytest.approx(7200, abs=1)
    assert load_video(path, 4).duration == pytest.approx(7200, abs=1)
    assert len(counted) == 1
    with open(path, "ab") as f:  # the file changes: its header is read again
        f.write(b"\0\0\0")
    probe(path)
    assert len(counted) == 2


def test_a_length_that_cannot_be_measured_in_time_is_refused_then_serves(headerless, gradio_clip, monkeypatch):
    path = headerless["raw"]
    with monkeypatch.context() as patch:
        patch.setattr(header_module, "LENGTH_SCAN_SECONDS", 0.0)
        for read in (probe, lambda p: load_video(p, 8)):
            with pytest.raises(ValueError) as err:
                read(path)
            message = str(err.value)
            assert message.startswith(
                f"cannot read video {path}: no usable duration in its header, and its length could not be "
                "measured within 0 s ("
            ), message
            assert "\n" not in message and len(message) < 300
        assert probe(gradio_clip("b.mp4")).duration == pytest.approx(5.0, abs=0.1)  # headers still serve
    assert load_video(path, 4).num_frames == 4


def test_app_refuses_two_headerless_hours_then_serves(headerless, tmp_path, monkeypatch):
    import gradio as gr

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from test_app import TINY, import_app, run_args

    from stc import demo as logic

    limits = logic.Limits(max_upload_mb=5, max_video_seconds=600, max_video_side=4096, max_generate_seconds=60,
                          concurrency=1, queue_size=2, cache_max_age=3600)
    app = import_app()
    monkeypatch.setattr(app.state, "limits", limits)
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))
    said = "video is 2:00:00 long; this app takes videos up to 10 min (trim it first)"
    for kind in ("raw", "live"):
        upload = tmp_path / headerless[kind].name
        upload.write_bytes(headerless[kind].read_bytes())
        with pytest.raises(ValueError) as err:
            logic.check_video_limits(upload, limits)
        assert str(err.value) == said
        with pytest.raises(gr.Error) as err:
            app.single.run(*run_args(video=upload, question="What is shown?", model=TINY))
        assert str(err.value.message) == said
    assert logic.check_video_limits(upload, replace(limits, max_video_seconds=3 * 3600)).duration > 7000
    _banner, base, compressed, _grid, _table, _chart, summary = app.single.run(*run_args(question="What is shown?"))
    assert base and compressed and "frames sampled" in summary


# --- 3. decoding bounded in time, and stoppable (issue 22) ----------------------------------------


@pytest.fixture
def decoded_frames(monkeypatch):
    """Counts the frames the seeking reader decodes (it reads every decoded frame's time)."""
    count = [0]
    real = readers_module.frame_time

    def counted(frame, start):
        count[0] += 1
        return real(frame, start)

    monkeypatch.setattr(readers_module, "frame_time", counted)
    return count


@pytest.mark.parametrize("kind", ["one", "ten"])
def test_sparse_keyframes_are_decoded_in_one_pass(sparse_keyframes, frame_level, decoded_frames, kind):
    """Every sampled frame used to be a seek decoding again from the keyframe (frame 0): 64 frames
    of the one-keyframe clip decoded 3.2 million frames (minutes). Now no frame decodes twice."""
    start = time.perf_counter()
    video = load_video(sparse_keyframes[kind], 64, backend="pyav")
    seconds = time.perf_counter() - start
    assert video.num_frames == 64 and video.total_frames == 100_000 and video.note is None
    assert video.frame_indices.tolist() == sample_indices(100_000, 64).tolist()
    # The frames asked for: luma frame_level(i) is RGB grey (level - 16) * 255 / 219 (limited range);
    # neighbours differ by 9.
    expected = np.clip((np.array([frame_level(i) for i in video.frame_indices]) - 16) * 255 / 219, 0, 255)
    assert np.abs(video.frames.reshape(64, -1).mean(axis=1) - expected).max() < 3
    assert decoded_frames[0] <= 100_000 + 64, decoded_frames[0]
    print(f"{kind} keyframe(s): 64 frames in {seconds:.1f} s, {decoded_frames[0]:,} frames decoded")
    assert seconds < 15


def test_decoding_stops_at_its_time_budget_then_serves(sparse_keyframes):
    path = sparse_keyframes["one"]  # decoding to its last sampled frame takes about a second or more
    for read in (lambda: load_video(path, 64, time_budget=0.2),
                 lambda: list(video_module.stream_video(path, 64, time_budget=0.2))):
        start = time.perf_counter()
        with pytest.raises(video_module.DecodeTimeout) as err:
            read()
        assert time.perf_counter() - start < 2.0
        message = str(err.value)
        assert isinstance(err.value, ValueError) and "\n" not in message and len(message) < 300
        assert message.startswith(f"cannot read video {path}: decoding passed its 0.2 s limit with "), message
        assert " of 64 frames read (" in message and message.endswith(
            "decoded); ask for fewer frames, or trim or shrink the video"), message
    assert load_video(path, 8, time_budget=60).num_frames == 8


def test_a_stream_budget_counts_decoding_not_its_consumer(gradio_clip):
    stream = video_module.stream_video(gradio_clip("b.mp4"), 16, chunk=4, time_budget=0.5)
    chunks = []
    for chunk in stream:  # 4 chunks; the consumer's 1.2 s are not decoding time
        chunks.append(chunk)
        time.sleep(0.3)
    assert sum(c.num_frames for c in chunks) == 16 and stream.note is None


@pytest.mark.parametrize("streamed", [False, True])
def test_decoding_stops_when_asked_then_serves(sparse_keyframes, streamed):
    path = sparse_keyframes["one"]
    asked, start = [], time.perf_counter()

    def should_stop():
        asked.append(time.perf_counter())
        return time.perf_counter() - start > 0.2

    with pytest.raises(video_module.Cancelled) as err:
        if streamed:
            list(video_module.stream_video(path, 64, should_stop=should_stop))
        else:
            load_video(path, 64, should_stop=should_stop)
    assert isinstance(err.value, RuntimeError) and str(err.value).startswith(f"cancelled while decoding {path} (")
    assert time.perf_counter() - start < 1.0 and len(asked) >= 3  # asked while decoding, stopped at once
    assert load_video(path, 4, should_stop=lambda: False).num_frames == 4


@pytest.mark.skipif("decord" not in _backends(), reason="decord is not installed")
def test_a_guarded_read_is_pyav_unless_decord_is_named(gradio_clip):
    path = gradio_clip("b.mp4")
    assert load_video(path, 8).backend == "decord"  # unguarded: decord when importable
    assert load_video(path, 8, time_budget=60).backend == "pyav"  # decord cannot be interrupted in a call
    assert load_video(path, 8, should_stop=lambda: False).backend == "pyav"
    asked = []
    named = load_video(path, 8, backend="decord", should_stop=lambda: asked.append(1) or False)
    assert named.backend == "decord" and len(asked) >= 1  # checked between its calls
    with pytest.raises(video_module.Cancelled):
        load_video(path, 8, backend="decord", should_stop=lambda: True)


@pytest.mark.parametrize("budget", [0, -1, float("nan"), float("inf"), True, "10"])
def test_a_bad_time_budget_is_refused(gradio_clip, budget):
    with pytest.raises(ValueError, match=r"^time_budget must be a positive number of seconds or None, got "):
        load_video(gradio_clip("b.mp4"), 8, time_budget=budget)
    with pytest.raises(ValueError, match=r"^should_stop must be a callable or None, got str$"):
        video_module.stream_video(gradio_clip("b.mp4"), 8, should_stop="stop")


def test_a_path_with_a_nul_byte_gets_one_line(tmp_path):
    for read in (probe, load_video):
        with pytest.raises(ValueError) as err:
            read(str(tmp_path / "clip\0.mp4"))
        assert str(err.value) == "not a video file path: it contains a NUL byte ('clip\\x00.mp4')"
