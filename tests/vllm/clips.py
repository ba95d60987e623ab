"""Real clips for the vLLM tests, of different lengths and sizes (vLLM samples 2 frames a second):

- cockatoo.mp4, imageio's sample video from Debian's python3-imageio (14 s, 1280 x 720, 14
  temporal patches): fetched with ``apt-get download`` into the cache on first use;
- world.mp4, gradio's (30 s, 480 x 270, 30 temporal patches; a globe on black: many near-equal
  tokens), from the gradio installed in the project's .venv (``make install``);
- examples/thanks_for_watching.mp4 (7 s, 640 x 360) and examples/toy_colour.mp4 (2 s, 384 x
  384: a square grid where the others are 16:9), this repository's.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_COCKATOO = "usr/lib/python3/dist-packages/imageio/resources/images/cockatoo.mp4"


def _cache() -> Path:
    return Path(os.environ.get("STC_VLLM_CACHE") or Path.home() / ".cache" / "stc").expanduser() / "clips"


def cockatoo() -> Path | None:
    """imageio's cockatoo.mp4: installed, cached, or downloaded from Debian (None if none works)."""
    for path in (Path("/") / _COCKATOO, _cache() / "cockatoo.mp4"):
        if path.exists():
            return path
    if not shutil.which("apt-get") or not shutil.which("dpkg"):
        return None
    with tempfile.TemporaryDirectory() as tmp:
        try:
            subprocess.run(["apt-get", "download", "python3-imageio"], cwd=tmp, check=True, capture_output=True, timeout=120)
            (deb,) = glob.glob(f"{tmp}/python3-imageio_*.deb")
            subprocess.run(["dpkg", "-x", deb, f"{tmp}/x"], check=True, capture_output=True, timeout=120)
        except (subprocess.SubprocessError, ValueError, OSError):
            return None
        _cache().mkdir(parents=True, exist_ok=True)
        shutil.copy(f"{tmp}/x/{_COCKATOO}", _cache() / "cockatoo.mp4")
    return _cache() / "cockatoo.mp4"


def gradio_world() -> Path | None:
    found = sorted(glob.glob(str(ROOT / ".venv" / "lib" / "python3*" / "site-packages" / "gradio" / "media_assets" /
                                 "videos" / "world.mp4")))
    return Path(found[0]) if found else None


def clips() -> dict[str, Path | None]:
    """name -> path (None: unavailable here)."""
    return {
        "cockatoo": cockatoo(),
        "world": gradio_world(),
        "thanks_for_watching": ROOT / "examples" / "thanks_for_watching.mp4",
        "toy_colour": ROOT / "examples" / "toy_colour.mp4",
    }
