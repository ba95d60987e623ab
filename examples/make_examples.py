"""Rebuild the demo clips: re-encodings of videos shipped in the gradio wheel (Apache-2.0), and
the synthetic clips the offline toy model answers (`stc.toy.data`, generated here).

    python examples/make_examples.py

Re-encodes with PyAV (H.264, no audio, yuv420p) so that each clip stays well under 1 MB and
decodes quickly; see examples/README.md for the sources and licence.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import av

HERE = Path(__file__).resolve().parent

# output name -> (gradio clip, output width, frames per second, CRF)
CLIPS = {
    "earth_at_night.mp4": ("world.mp4", 480, 15, 23),
    "earth_rotation.mp4": ("muted_b.mp4", 480, 30, 21),
    "thanks_for_watching.mp4": ("a.mp4", 640, 30, 21),
}


def toy_examples() -> dict[str, int]:
    """{output name: seed} of the synthetic clips (`stc.toy.data.DEMO_SEEDS`)."""
    from stc.toy.data import DEMO_SEEDS

    return {f"toy_{kind}.mp4": seed for kind, seed in DEMO_SEEDS.items()}


def gradio_videos() -> Path:
    spec = importlib.util.find_spec("gradio")
    if spec is None or spec.origin is None:
        raise SystemExit("gradio is not installed: pip install gradio")
    return Path(spec.origin).parent / "media_assets" / "videos"


def reencode(source: Path, target: Path, width: int, fps: int, crf: int) -> None:
    with av.open(str(source)) as src, av.open(
        str(target), "w", format="mp4", options={"movflags": "+faststart"}
    ) as dst:
        stream_in = src.streams.video[0]
        height = round(stream_in.height * width / stream_in.width / 2) * 2
        out = dst.add_stream("libx264", rate=fps)
        out.width, out.height, out.pix_fmt = width, height, "yuv420p"
        out.options = {"crf": str(crf), "preset": "veryslow"}
        step = float(stream_in.average_rate) / fps
        next_index, index = 0.0, 0
        for frame in src.decode(stream_in):
            if index >= next_index:
                # A fresh frame: the source's timestamps must not leak into the new stream.
                pixels = frame.to_ndarray(width=width, height=height, format="rgb24")
                image = av.VideoFrame.from_ndarray(pixels, format="rgb24")
                for packet in out.encode(image):
                    dst.mux(packet)
                next_index += step
            index += 1
        for packet in out.encode():
            dst.mux(packet)


def main() -> None:
    videos = gradio_videos()
    for name, (source, width, fps, crf) in CLIPS.items():
        target = HERE / name
        reencode(videos / source, target, width, fps, crf)
        print(f"{target.relative_to(HERE.parent)}: {target.stat().st_size / 1024:.0f} KiB from gradio {source}")
    from stc.toy.data import make_sample, write_mp4

    for name, seed in toy_examples().items():
        sample = make_sample(seed)
        target = write_mp4(sample.frames, HERE / name)
        print(f"{target.relative_to(HERE.parent)}: {target.stat().st_size / 1024:.0f} KiB, stc.toy seed {seed} "
              f"({sample.kind}: {sample.question} -> {sample.answer_text})")


if __name__ == "__main__":
    main()
