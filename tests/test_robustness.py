"""Bad input, load and faults (issue 7), on the offline tiny model.

Every bad input gets a clear one-line message from the library, from the app's handler, and from
the app served in-process on loopback and driven through gradio_client, and the app then serves a
good request. The queue runs one request at a time and tells the rest it is busy beyond its size,
without mixing requests up; uploads, durations, frame sizes and generation time are capped; only
uploads and the examples are ever read; nothing the app writes grows without bound.
"""

import concurrent.futures
import json
import math
import os
import re
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_app import CLIP, FRAMES, ROOT, TINY, free_port, import_app, run_args, serving  # noqa: E402

import stc.video as video_module  # noqa: E402
import stc.video.stream as stream_module  # noqa: E402
from stc import STCConfig  # noqa: E402
from stc import demo as logic  # noqa: E402
from stc.demo.app_state import parse_args  # noqa: E402
from stc.demo.tabs.examples import EXAMPLES  # noqa: E402
from stc.models.family import check_question  # noqa: E402
from stc.video import load_video, probe  # noqa: E402

# The served app's limits: small enough to reach in a test.
LIMITS = logic.Limits(max_upload_mb=1, max_video_seconds=600, max_video_side=4096, max_generate_seconds=60,
                      concurrency=1, queue_size=2, cache_max_age=3600)
QUESTION = "What is shown?"


def one_line(message: str) -> bool:
    return "\n" not in message and "Traceback" not in message and len(message) < 400


# --- bad files, written in tmp_path --------------------------------------------------------------


def long_header_clip(path: Path, hours: float = 2.0) -> Path:
    """Five tiny frames whose last one is stamped ``hours`` in: the header says hours long."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i, pts in enumerate([0, 1, 2, 3, int(25 * 3600 * hours)]):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 40 * i, np.uint8), format="rgb24")
            frame.pts = pts
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture
def bad_file(tmp_path, make_clip, make_audio, gradio_clip):
    """bad_file(kind) -> Path of a file of that kind in tmp_path."""

    def make(kind: str) -> Path:
        if kind == "text":
            path = tmp_path / "notes.mp4"
            path.write_text("plain text renamed to look like a video\n" * 50)
        elif kind == "empty":
            path = tmp_path / "empty.mp4"
            path.write_bytes(b"")
        elif kind == "truncated":
            data = gradio_clip("b.mp4").read_bytes()  # its index sits at the end: cut, it is gone
            path = tmp_path / "cut.mp4"
            path.write_bytes(data[: int(len(data) * 0.6)])
        elif kind == "audio":
            path = make_audio("speech.mp4")
        elif kind == "long":
            path = long_header_clip(tmp_path / "two_hours.mp4")
        elif kind == "wide":
            path = make_clip("wide.mp4", 2, size=(4352, 64))
        elif kind == "one_frame":
            path = make_clip("one_frame.mp4", 1)
        elif kind == "five_frames":
            path = make_clip("five_frames.mp4", 5)
        elif kind == "4k":
            path = make_clip("uhd.mp4", 3, size=(3840, 2160))
        else:
            raise KeyError(kind)
        return path

    return make


# --- the library ---------------------------------------------------------------------------------


def test_probe_reads_the_header_without_decoding(bad_file, monkeypatch):
    def no_decoding(*args, **kwargs):
        raise AssertionError("probe must not decode frames")

    monkeypatch.setattr(stream_module, "read_sequential", no_decoding)
    monkeypatch.setattr(stream_module, "read_seeking", no_decoding)
    info = probe(CLIP)
    assert (info.width, info.height, info.frames) == (480, 270, 150) and abs(info.duration - 5.0) < 0.1
    start = time.perf_counter()
    long = probe(bad_file("long"))
    assert abs(long.duration - 7200) < 1 and time.perf_counter() - start < 1.0
    assert (probe(bad_file("4k")).width, probe(bad_file("4k")).height) == (3840, 2160)


@pytest.mark.parametrize("kind, match", [("text", "not a video file"), ("empty", "is empty"),
                                         ("audio", "no video stream (has: audio)"),
                                         ("truncated", "corrupt/truncated")])
def test_probe_and_load_video_refuse_bad_files_in_one_line(bad_file, kind, match):
    path = bad_file(kind)
    for read in (probe, lambda p: load_video(p, 8)):
        with pytest.raises(ValueError, match=re.escape(match)) as err:
            read(path)
        assert one_line(str(err.value))


def test_short_long_and_huge_videos_sample_what_exists_and_say_so(bad_file):
    one = load_video(bad_file("one_frame"), 8)
    assert one.num_frames == 1 and one.note == "video has 1 frame; sampled 1 of 8 asked"
    uhd = load_video(bad_file("4k"), 8)
    assert uhd.num_frames == 3 and max(uhd.width, uhd.height) <= video_module.MAX_SIDE
    assert uhd.note == "video has 3 frames; sampled 3 of 8 asked"
    start = time.perf_counter()  # two hours by its header, five frames in fact: nothing else is decoded
    long = load_video(bad_file("long"), 8)
    assert long.num_frames == 5 and "sampled 5 of 8" in long.note and time.perf_counter() - start < 5


@pytest.mark.parametrize("retention", [0, -0.5, 1.5, float("nan"), float("inf"), True, "0.1", None])
def test_config_refuses_nonsense_retention(retention):
    with pytest.raises(ValueError, match="retention") as err:
        STCConfig(retention=retention)
    assert one_line(str(err.value))


@pytest.mark.parametrize("frames", [0, -1, 1025, 8.5])
def test_load_video_refuses_frame_counts_out_of_range(frames):
    with pytest.raises(ValueError, match=r"num_frames must be an int in \[1, 1024\]"):
        load_video(CLIP, frames)


@pytest.mark.parametrize("question, match", [("", "non-empty"), ("  \n\t ", "non-empty"),
                                             ("x" * 10_000, "too long (10000 characters; at most 2000)")])
def test_library_refuses_empty_and_overlong_questions(question, match):
    with pytest.raises(ValueError, match=re.escape(match)):
        check_question(question)


def test_feature_cache_is_bounded_in_entries_and_bytes(app):
    from stc import Video

    llm = app.state.pool.get(TINY)
    saved = llm.cache_entries, llm.cache_bytes
    videos = [Video.from_frames(np.full((2, 64, 64, 3), 40 * (i + 1), np.uint8)) for i in range(3)]
    try:
        llm.clear_cache()
        llm.cache_entries = 2
        for video in videos:
            assert llm.encode(video)[1] is False
        assert llm.encode(videos[2])[1] is True and llm.encode(videos[1])[1] is True
        assert llm.encode(videos[0])[1] is False  # the oldest went: at most 2 entries
        llm.cache_entries, llm.cache_bytes = 10, 1  # nothing fits but the newest entry, which stays
        llm.encode(videos[2])
        assert llm.encode(videos[1])[1] is False and llm.encode(videos[1])[1] is True
        assert llm.encode(videos[2])[1] is False
    finally:
        llm.cache_entries, llm.cache_bytes = saved
        llm.clear_cache()


# --- the app's pieces ----------------------------------------------------------------------------


def test_limits_come_from_the_environment_and_flags(monkeypatch, app):
    assert logic.Limits.from_env({}) == logic.Limits()
    env = {"STC_MAX_UPLOAD_MB": "50", "STC_MAX_VIDEO_SECONDS": "900", "STC_QUEUE_SIZE": "4",
           "STC_MAX_GENERATE_SECONDS": "30.5", "STC_CONCURRENCY": "2", "STC_MAX_VIDEO_SIDE": "4096",
           "STC_CACHE_MAX_AGE": "600", "STC_MAX_DECODE_SECONDS": "12"}
    limits = logic.Limits.from_env(env, queue_size=8)
    assert limits == logic.Limits(max_upload_mb=50, max_video_seconds=900, max_video_side=4096,
                                  max_generate_seconds=30.5, max_decode_seconds=12, concurrency=2, queue_size=8,
                                  cache_max_age=600)
    for variable, value in [("STC_QUEUE_SIZE", "0"), ("STC_CONCURRENCY", "1.5"), ("STC_MAX_VIDEO_SECONDS", "nan"),
                            ("STC_MAX_UPLOAD_MB", "lots")]:
        with pytest.raises(ValueError, match=variable):
            logic.Limits.from_env({variable: value})
    args = parse_args(["--queue-size", "3", "--max-video-seconds", "120", "--max-decode-seconds", "9.5"])
    flags = logic.Limits.from_env({}, **{name: getattr(args, name) for name in logic.Limits.ENV})
    assert flags.queue_size == 3 and flags.max_video_seconds == 120 and flags.concurrency == 1
    assert flags.max_decode_seconds == 9.5
    # The defaults the app runs with, and that the page states them.
    assert app.demo.delete_cache == (600, 3600)
    assert "200 MB" in logic.limits_text(logic.Limits()) and "busy" in logic.limits_text(logic.Limits())
    assert "8–64 frames, decoded within 30 s;" in logic.limits_text(logic.Limits())


def test_only_uploads_and_examples_are_read(tmp_path):
    uploads, examples = tmp_path / "uploads", ROOT / "examples"
    (uploads / "ab12").mkdir(parents=True)
    clip = uploads / "ab12" / "clip.mp4"
    clip.write_bytes(b"x")
    allowed = [uploads, examples]
    assert logic.check_video_path(clip, allowed) == str(clip.resolve())
    assert logic.check_video_path(examples / "earth_rotation.mp4", allowed).endswith("earth_rotation.mp4")
    outside = tmp_path / "secret.mp4"
    outside.write_bytes(b"x")
    (uploads / "ab12" / "link.mp4").symlink_to(outside)
    for path in [outside, "/etc/passwd", uploads / "ab12" / "link.mp4", examples / ".." / "README.md",
                 uploads / ".." / "secret.mp4", uploads]:
        with pytest.raises(ValueError, match="is not an uploaded video") as err:
            logic.check_video_path(path, allowed)
        assert one_line(str(err.value)) and str(tmp_path) not in str(err.value)


def test_messages_never_show_server_folders():
    assert logic.hide_folders("cannot read video /tmp/gradio/ab12/cut.mp4: corrupt") == "cannot read video cut.mp4: corrupt"
    kept = "see https://huggingface.co/docs/offline-mode; tiny-random/x; 1/2"
    assert logic.hide_folders(kept) == kept


# --- the handler: every bad input, then a good request ------------------------------------------


@pytest.fixture
def limited(app, monkeypatch, tmp_path):
    """The app's handler with the test limits, and tmp_path as Gradio's upload folder."""
    monkeypatch.setattr(app.state, "limits", LIMITS)
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))
    return app


@pytest.fixture(scope="module")
def app():
    return import_app()


# (case, how to make the request from run_args, what the handler says, what the served app says)
NAN = float("nan")
BAD = [
    ("text renamed .mp4", dict(video="text"), "cannot read video notes.mp4: not a video file", None),
    ("empty file", dict(video="empty"), "video file is empty: empty.mp4", None),
    ("truncated mp4", dict(video="truncated"), "cannot read video cut.mp4: not a video file, or corrupt/truncated",
     None),
    ("audio only", dict(video="audio"), "cannot read video speech.mp4: no video stream (has: audio)", None),
    ("hours long", dict(video="long"), "video is 2:00:00 long; this app takes videos up to 10 min", None),
    ("frames too large", dict(video="wide"), "video frames are 4352x64; this app takes up to 4096 pixels", None),
    ("empty question", dict(question=""), "type a question about the video", None),
    ("whitespace question", dict(question=" \n\t "), "type a question about the video", None),
    ("10,000-character question", dict(question="why?" * 2500), "question is too long (10000 characters; at most 2000)",
     None),
    ("retention 0", dict(retention=0), "retention (%) must be in [1, 50], got 0", None),
    ("retention negative", dict(retention=-5), "retention (%) must be in [1, 50], got -5", None),
    ("retention over 100%", dict(retention=150), "retention (%) must be in [1, 50], got 150", None),
    ("retention NaN", dict(retention=NAN), "retention (%) must be in [1, 50], got nan", None),
    ("frames 0", dict(frames=0), "frames must be in [8, 64], got 0", None),
    ("frames 1000", dict(frames=1000), "frames must be in [8, 64], got 1000", None),
    ("unknown model", dict(model="someone/not-a-model"), "unknown model 'someone/not-a-model'; pick one of:", None),
    ("no video", dict(video=None), "upload a video first", None),
]
FILE_KINDS = {"text", "empty", "truncated", "audio", "long", "wide"}


def bad_args(change: dict, bad_file, question=QUESTION):
    kwargs = {"question": question, **change}
    if kwargs.get("video") in FILE_KINDS:
        kwargs["video"] = bad_file(kwargs["video"])
    return run_args(**kwargs)


def check_good(outputs, question=QUESTION, frames=FRAMES, video=CLIP.name):
    banner, base, comp, _grid, table, _chart, summary = outputs
    assert base and comp and "meaningless" in banner
    rows = {row[0]: row for row in table["data"]}
    assert rows["baseline"][1] == f"{frames * 196:,}"  # every sampled token, uncompressed
    assert f"`{video}`, {frames} frames sampled · “{question}”" in summary


@pytest.mark.parametrize("case, change, said, _", BAD, ids=[case for case, *_ in BAD])
def test_handler_answers_each_bad_input_in_one_line_then_serves(limited, bad_file, case, change, said, _):
    import gradio as gr

    with pytest.raises(gr.Error) as err:
        limited.single.run(*bad_args(change, bad_file))
    message = str(err.value.message)
    assert said in message and one_line(message), message
    check_good(limited.single.run(*run_args(question=QUESTION)))


def test_handler_refuses_server_paths(limited, tmp_path):
    import gradio as gr

    secret = tmp_path.parent / f"{tmp_path.name}-secret.mp4"
    secret.write_bytes(CLIP.read_bytes())
    (tmp_path / "link.mp4").symlink_to(secret)
    try:
        for path in ["/etc/passwd", str(secret), str(tmp_path / "link.mp4"), str(ROOT / "examples" / ".." / "README.md")]:
            with pytest.raises(gr.Error, match="is not an uploaded video") as err:
                limited.single.run(*run_args(video=path))
            assert one_line(str(err.value.message)) and str(tmp_path.parent) not in str(err.value.message)
    finally:
        secret.unlink()
    check_good(limited.single.run(*run_args(question=QUESTION)))


@pytest.mark.parametrize("kind, frames_read", [("one_frame", 1), ("five_frames", 5), ("4k", 3)])
def test_handler_samples_short_and_huge_videos_and_warns(limited, bad_file, kind, frames_read):
    path = bad_file(kind)
    with pytest.warns(UserWarning, match=f"sampled {frames_read} of {FRAMES} asked"):  # gr.Warning outside a UI
        outputs = limited.single.run(*run_args(video=path, question=QUESTION))
    _banner, base, comp, grid, table, _chart, summary = outputs
    assert base and comp and grid.width > 100
    assert f"Note: video has {frames_read} frame{'s' * (frames_read > 1)}; sampled {frames_read} of {FRAMES} asked." in summary
    rows = {row[0]: row for row in table["data"]}
    assert rows["baseline"][1] == f"{frames_read * 196:,}"


def test_out_of_memory_suggests_fewer_frames_and_the_model_recovers(limited, monkeypatch):
    import gradio as gr
    import torch

    llm = limited.state.pool.get(TINY)
    real = llm.model.generate

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(llm.model, "generate", out_of_memory)
    with pytest.raises(gr.Error) as err:
        limited.single.run(*run_args(question=QUESTION))
    message = str(err.value.message)
    assert "out of CPU memory with 8 frames" in message and "try fewer frames" in message and one_line(message)
    monkeypatch.setattr(llm.model, "generate", real)
    check_good(limited.single.run(*run_args(question=QUESTION)))


def test_generation_time_is_bounded_and_said(limited, monkeypatch):
    monkeypatch.setattr(limited.state, "limits", replace(LIMITS, max_generate_seconds=0.001))
    with pytest.warns(UserWarning, match="generation stopped at the 0.001 s limit"):
        outputs = limited.single.run(*run_args(question=QUESTION, tokens=256))
    assert "Note: generation stopped at the 0.001 s limit." in outputs[-1]
    new_tokens = logic.COST_HEADERS.index("new tokens")
    assert all(int(row[new_tokens]) < 256 for row in outputs[4]["data"])


def test_compare_mode_checks_its_input_too(limited, bad_file):
    import gradio as gr

    args = bad_args(dict(video="long"), bad_file)
    args[5] = ["stc", "fastv"]
    with pytest.raises(gr.Error, match="2:00:00 long"):
        limited.compare.run(*args)
    args = run_args(question=QUESTION)
    args[5] = ["stc", "nope"]
    with pytest.raises(gr.Error, match="unknown method 'nope'"):
        limited.compare.run(*args)
    args[5] = ["stc", "fastv"]
    assert len(limited.compare.run(*args)[2]["data"]) == 3


# --- the served app --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(app):
    """The app with the test limits, launched on loopback."""
    saved = app.state.limits
    app.state.limits = LIMITS
    try:
        with serving(app) as url:
            yield url
    finally:
        app.state.limits = saved


@pytest.fixture
def client(served):
    from gradio_client import Client

    return Client(served, verbose=False)


def predict(client, args):
    from gradio_client import handle_file

    args = list(args)
    if args[0] is not None:
        args[0] = handle_file(str(args[0]))
    return client.predict(*args, api_name="/run")


def call_raw(served: str, data: list) -> str:
    """POST ``data`` to /run as raw JSON (what gradio_client cannot send: NaN, server paths) and
    return the error message of the result, or None when it succeeded."""
    import httpx

    with httpx.Client(base_url=served, timeout=120) as http:
        body = json.dumps({"data": data})  # allow_nan: a NaN goes out as the JSON token NaN
        event = http.post("gradio_api/call/run", content=body, headers={"content-type": "application/json"})
        stream = http.get(f"gradio_api/call/run/{event.json()['event_id']}").text
    if "event: error" not in stream:
        return None
    return json.loads(stream.split("event: error\ndata:", 1)[1].strip().splitlines()[0])["error"]


def uploaded(served: str, path: Path) -> dict:
    """Upload ``path`` and return the FileData payload naming it on the server."""
    import httpx

    response = httpx.post(f"{served}gradio_api/upload", files={"files": (path.name, path.read_bytes())}, timeout=60)
    return {"path": response.json()[0], "meta": {"_type": "gradio.FileData"}}


@pytest.mark.parametrize("case, change, said, client_said", BAD, ids=[case for case, *_ in BAD])
def test_served_app_answers_each_bad_input_in_one_line_then_serves(served, client, bad_file, case, change, said,
                                                                   client_said):
    from gradio_client.exceptions import AppError

    args = bad_args(change, bad_file)
    if any(isinstance(a, float) and math.isnan(a) for a in args):  # gradio_client refuses to send NaN
        args[0] = uploaded(served, Path(args[0]))
        message = call_raw(served, args)
    else:
        with pytest.raises(AppError) as err:
            predict(client, args)
        message = str(err.value)
    assert (client_said or said) in message and one_line(message), message
    check_good(predict(client, run_args(question=QUESTION)))


@pytest.mark.parametrize("kind, frames_read", [("one_frame", 1), ("4k", 3)])
def test_served_app_samples_short_and_huge_videos(client, bad_file, kind, frames_read):
    outputs = predict(client, run_args(video=bad_file(kind), question=QUESTION))
    assert outputs[1] and outputs[2]
    assert f"Note: video has {frames_read} frame{'s' * (frames_read > 1)}; sampled {frames_read} of {FRAMES} asked." in outputs[-1]


def test_served_app_refuses_uploads_over_the_cap(served, client, tmp_path):
    import httpx

    big = tmp_path / "big.mp4"
    big.write_bytes(os.urandom(int(1.5 * 2**20)))  # over the 1 MB cap
    response = httpx.post(f"{served}gradio_api/upload", files={"files": ("big.mp4", big.read_bytes())}, timeout=30)
    # the wording the README quotes (the page refuses in the browser: 'File(s) exceed the maximum allowed size of ...')
    assert response.status_code == 413 and response.text == "File size exceeded maximum allowed size of 1048576 bytes."
    assert one_line(response.text)
    check_good(predict(client, run_args(question=QUESTION)))


def test_served_app_never_reads_a_server_path(served, client):
    """An API caller naming a file on the server instead of uploading it gets one line naming
    the file, never the file nor its folder (refused before Gradio reads it)."""
    for path in ["/etc/passwd", str(ROOT / "README.md"), str(ROOT / "examples" / "earth_rotation.mp4")]:
        data = run_args(question=QUESTION)
        data[0] = {"path": path, "meta": {"_type": "gradio.FileData"}}
        message = call_raw(served, data)
        assert message == f"{Path(path).name} is not an uploaded video: this app reads only uploads and its own examples"
    ok = run_args(question=QUESTION)
    ok[0] = uploaded(served, CLIP)
    assert call_raw(served, ok) is None  # the same call with an upload is served
    check_good(predict(client, run_args(question=QUESTION)))


def test_served_app_bounds_generation_and_recovers_from_out_of_memory(served, client, app, monkeypatch):
    import torch
    from gradio_client.exceptions import AppError

    monkeypatch.setattr(app.state, "limits", replace(LIMITS, max_generate_seconds=0.001))
    outputs = predict(client, run_args(question=QUESTION, tokens=256))
    assert "Note: generation stopped at the 0.001 s limit." in outputs[-1]
    monkeypatch.setattr(app.state, "limits", LIMITS)

    llm = app.state.pool.get(TINY)
    real = llm.model.generate
    monkeypatch.setattr(llm.model, "generate", lambda *a, **k: (_ for _ in ()).throw(torch.OutOfMemoryError("CUDA oom")))
    with pytest.raises(AppError, match="try fewer frames"):
        predict(client, run_args(question=QUESTION))
    monkeypatch.setattr(llm.model, "generate", real)
    check_good(predict(client, run_args(question=QUESTION)))


def test_concurrent_requests_complete_or_are_told_busy_never_mixed_up(served, app, monkeypatch):
    """Six visitors at once on a queue of 2 behind one worker: each gets the answers to ITS
    question about ITS video, or a clear "busy"; nothing hangs, nothing is lost."""
    from gradio_client import Client, handle_file
    from gradio_client.utils import QueueError

    # Hold the first request inside the handler until the others have joined or been refused,
    # so the queue really fills up (the tiny model would otherwise finish too fast).
    gate, real = threading.Event(), logic.run_comparison

    def held(*args, **kwargs):
        gate.wait(60)
        return real(*args, **kwargs)

    monkeypatch.setattr(logic, "run_comparison", held)
    videos = [CLIP, ROOT / "examples" / "earth_at_night.mp4", ROOT / "examples" / "thanks_for_watching.mp4"]
    requests = [(videos[i % 3], f"Visitor {i}: what happens here?", FRAMES + 4 * i) for i in range(6)]
    clients = [Client(served, verbose=False) for _ in requests]
    outcomes: dict[int, object] = {}
    lock = threading.Lock()

    def visit(i: int):
        video, question, frames = requests[i]
        args = run_args(question=question, frames=frames)
        args[0] = handle_file(str(video))
        try:
            result = clients[i].submit(*args, api_name="/run").result(timeout=120)
        except QueueError as err:
            result = err
        with lock:
            outcomes[i] = result
        return result

    with concurrent.futures.ThreadPoolExecutor(len(requests)) as pool:
        futures = [pool.submit(visit, i) for i in range(len(requests))]
        refused_at_least = len(requests) - LIMITS.concurrency - LIMITS.queue_size
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with lock:
                busy = sum(isinstance(r, QueueError) for r in outcomes.values())
            if busy >= refused_at_least:
                break
            time.sleep(0.05)
        gate.set()
        _, pending = concurrent.futures.wait(futures, timeout=180)
    assert not pending, "a request hung"

    completed, busy = [], []
    for i, (video, question, frames) in enumerate(requests):
        result = outcomes[i]
        if isinstance(result, QueueError):
            assert "Queue is full" in str(result) and one_line(str(result))
            busy.append(i)
            continue
        check_good(result, question=question, frames=frames, video=video.name)  # its own question and video
        completed.append(i)
    assert len(completed) + len(busy) == len(requests)
    assert len(completed) >= LIMITS.queue_size and len(busy) >= refused_at_least, (completed, busy)
    monkeypatch.setattr(logic, "run_comparison", real)
    check_good(predict(Client(served, verbose=False), run_args(question=QUESTION)))


def test_uploads_and_outputs_are_deleted_after_their_age(app, monkeypatch, tmp_path, make_clip):
    """cache_max_age bounds what the app keeps on disk: uploads and drawn outputs go."""
    from gradio_client import Client, handle_file

    clip = make_clip("visitor.mp4", 10)
    uploads = tmp_path / "gradio"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(uploads))
    # 6 s: longer than one run takes on a loaded 2-core machine (with 1 s the files of a run were
    # sometimes gone before the run returned, so the test could not see them written), and Gradio
    # still checks every second
    monkeypatch.setattr(app.state, "limits", replace(LIMITS, cache_max_age=6))
    demo = app.build()
    assert demo.delete_cache == (1, 6)
    port = free_port()
    app.launch(demo, server_name="127.0.0.1", server_port=port, share=False, prevent_thread_lock=True, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        args = run_args(question=QUESTION)
        args[0] = handle_file(str(clip))
        check_good(client.predict(*args, api_name="/run"), video=clip.name)
        examples = {p for p in uploads.rglob("*") if p.is_file() and p.name in {Path(v).name for v, _ in EXAMPLES}}
        written = {p for p in uploads.rglob("*") if p.is_file()} - examples
        assert any(p.name == clip.name for p in written) and any(p.suffix == ".png" for p in written)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(p.exists() for p in written):
            time.sleep(0.25)
        assert not any(p.exists() for p in written), sorted(str(p) for p in written if p.exists())
        assert all(p.exists() for p in examples)  # the examples stay servable
    finally:
        demo.close()

