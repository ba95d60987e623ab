#!/usr/bin/env python3
"""A simulated Hugging Face Space build: the Space's Python, its install, its start, one request.

    python tools/space_build.py          # stdlib only; any Python 3.10+ can run it

1. Reads README.md's front matter (python_version, sdk, sdk_version, app_file) and checks that it
   agrees with requirements.txt (a `gradio` line must pin `==sdk_version`), pyproject.toml
   (requires-python admits python_version, the `app` extra admits sdk_version) and that the
   LICENSE the front matter names exists (tools/space_files.py).
2. Finds an interpreter for python_version ($STC_SPACE_PYTHON, else pyenv's newest matching
   release, else `pythonX.Y` on PATH) and fails if its version is not python_version.
3. Makes a venv on it, cached in ${STC_SPACE_CACHE:-~/.cache/stc}/space-venv-<python>-<key>
   (key: the interpreter, requirements.txt, sdk_version and this recipe); a venv is used only once
   its build has finished (a marker file), so a killed build is rebuilt, never reused; older
   space-venv-* folders are pruned. Every run installs what the Space installs, in one resolve:
   `pip install -r requirements.txt gradio[oauth]==<sdk_version> uvicorn>=0.14.0 spaces`
   (a no-op when already satisfied, so it still proves the file resolves), then `pip check`.
4. Copies what .github/workflows/space.yml publishes (its `files = [...]` list) to a fresh
   folder and starts `python <app_file>` there as the Space would: SYSTEM=spaces, SPACE_ID, no
   hub (HF_HUB_OFFLINE=1, an empty HF_HOME, so the app falls back to its toy model), loopback,
   a free port, and no SPACES_ZERO_GPU (that would make `spaces` call ZeroGPU's servers).
5. Answers one request through gradio_client (from the Space venv) on a shipped example clip
   and checks the banner and both answers.
6. Runs tests/test_processors.py with pytest inside the Space venv (transformers' own
   processors load there): it must pass, and nothing may skip but the tests of the
   torchvision-less fallback (EXPECTED_SKIPS).

Exit status: 0 built and answered; 1 a failure (one line says why, after the log); 3 no
interpreter for python_version (tests/test_space_build.py skips on it, and fails under CI=true).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from space_files import BuildError, NoInterpreter, check_agreement, copy_published, published_patterns, version_tuple

ROOT = Path(__file__).resolve().parents[1]
RECIPE = "3"  # bump when the venv recipe below changes, so cached venvs are rebuilt
SPACE_ID = "sim/stc"
# What the Space installs besides requirements.txt (gradio comes from the front matter).
SPACE_EXTRAS = ["uvicorn>=0.14.0", "spaces"]
# Installed after the Space's packages, only to run the tests below inside the Space venv.
TEST_PACKAGES = ["pytest>=8", "hypothesis>=6.100"]
# A skip in the Space venv fails the build, except these reasons: tests of the torchvision-less
# fallback, which skip exactly where transformers' processors load.
EXPECTED_SKIPS = ("for machines without torchvision",)
SPACE_VENV_TESTS = os.environ.get("STC_SPACE_TESTS", "tests/test_processors.py").split()
QUESTION = "What is shown in this video, and how does it move?"
START_TIMEOUT = float(os.environ.get("STC_SPACE_START_TIMEOUT", 180))
REQUEST_TIMEOUT = 300.0
EXIT_FAILED, EXIT_NO_PYTHON = 1, 3


# --- the interpreter ------------------------------------------------------------------------


def _run(cmd, *, timeout=None, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)


def find_interpreter(version: str) -> Path:
    """$STC_SPACE_PYTHON, else pyenv's newest installed release matching ``version``, else
    `python<major.minor>` on PATH."""
    override = os.environ.get("STC_SPACE_PYTHON")
    if override:
        if not Path(override).is_file():
            raise NoInterpreter(f"STC_SPACE_PYTHON={override} does not exist")
        return Path(override)
    major_minor = ".".join(version.split(".")[:2])
    pyenv = shutil.which("pyenv")
    if pyenv:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            latest = _run([pyenv, "latest", version], timeout=30).stdout.strip()
            if latest:
                prefix = _run([pyenv, "prefix", latest], timeout=30).stdout.strip()
                for name in (f"python{major_minor}", "python3", "python"):
                    if prefix and (Path(prefix) / "bin" / name).is_file():
                        return Path(prefix) / "bin" / name
    pyenv_root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    found = [p for p in (pyenv_root / "versions").glob(f"{version}*/bin/python{major_minor}")
             if re.fullmatch(rf"{re.escape(version)}(\.\d+)*", p.parents[1].name)]
    if found:
        return max(found, key=lambda p: version_tuple(p.parents[1].name))
    on_path = shutil.which(f"python{major_minor}")
    if on_path:
        return Path(on_path)
    raise NoInterpreter(f"no Python {version} here (tried $STC_SPACE_PYTHON, pyenv, python{major_minor} on PATH); "
                        f"install it with `pyenv install {version}`")


def interpreter_version(python: Path) -> str:
    result = _run([str(python), "-c", "import sys; print('.'.join(map(str, sys.version_info[:3])))"], timeout=60)
    if result.returncode:
        raise BuildError(f"{python} does not run: {result.stderr.strip()[-300:]}")
    return result.stdout.strip()


def check_interpreter(python: Path, wanted: str) -> str:
    """The interpreter's X.Y.Z; BuildError when its X.Y is not the front matter's."""
    have = interpreter_version(python)
    if version_tuple(have)[:2] != version_tuple(wanted)[:2]:
        raise BuildError(f"the front matter says python_version {wanted} but {python} is Python {have}")
    return have


# --- the venv -------------------------------------------------------------------------------


def cache_dir() -> Path:
    return Path(os.environ.get("STC_SPACE_CACHE") or Path.home() / ".cache" / "stc").expanduser()


def venv_key(python: Path, python_version: str, requirements: bytes, sdk_version: str) -> str:
    digest = hashlib.sha256()
    for part in (RECIPE, str(python.resolve()), python_version, sdk_version, *SPACE_EXTRAS, *TEST_PACKAGES):
        digest.update(part.encode() + b"\0")
    digest.update(requirements)
    return digest.hexdigest()[:16]


@contextlib.contextmanager
def locked(path: Path, *, wait: bool = True):
    """An exclusive lock file (POSIX flock); yields False when ``wait`` is off and it is held."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _checked_run(cmd: list[str], what: str, log: Path, *, timeout: float, **kwargs) -> str:
    """Run ``cmd``; its output goes to ``log`` (appended) and is returned; BuildError on failure."""
    try:
        result = _run(cmd, timeout=timeout, **kwargs)
    except subprocess.TimeoutExpired:
        raise BuildError(f"{what} took longer than {timeout:.0f} s") from None
    output = result.stdout + result.stderr
    with open(log, "a", encoding="utf-8") as handle:
        handle.write(f"$ {' '.join(cmd)}\n{output}\n")
    if result.returncode:
        print(output[-4000:], file=sys.stderr)
        last = next((line for line in reversed(output.splitlines()) if line.strip()), "")
        raise BuildError(f"{what} failed (exit {result.returncode}): {last.strip()[:300]}")
    return output


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PIP_REQUIRE_VIRTUALENV",
                        "SPACES_ZERO_GPU", "STC_MODEL", "PIP_CONSTRAINT")}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONDONTWRITEBYTECODE="1", **extra)
    return env


def space_install_args(meta: dict[str, str], root: Path = ROOT) -> list[str]:
    """What the Space's build installs, as pip arguments (one resolve)."""
    return ["-r", str(root / "requirements.txt"), f"gradio[oauth]=={meta['sdk_version']}", *SPACE_EXTRAS]


def build_venv(python: Path, python_version: str, meta: dict[str, str], log: Path) -> Path:
    """The cached Space venv for this interpreter and requirements, built when missing, and
    brought up to date with the Space's install (a no-op when nothing changed)."""
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    requirements = (ROOT / "requirements.txt").read_bytes()
    key = venv_key(python, python_version, requirements, meta["sdk_version"])
    venv = cache / f"space-venv-py{python_version}-{key}"
    vpython = venv / "bin" / "python"
    marker = venv / ".stc-space-build-complete"
    env = _clean_env()
    with locked(cache / f"space-venv-{key}.lock"):
        if not marker.is_file():
            if venv.exists():
                print(f"  removing an unfinished build at {venv}")
                shutil.rmtree(venv)
            print(f"  building {venv} (first run on this interpreter and requirements.txt: minutes)")
            _checked_run([str(python), "-m", "venv", str(venv)], "creating the venv", log, timeout=300, env=env)
            _checked_run([str(vpython), "-m", "pip", "install", "-q", "--upgrade", "pip"], "upgrading pip", log,
                         timeout=600, env=env)
        _checked_run([str(vpython), "-m", "pip", "install", "-q", *space_install_args(meta)],
                     "the Space's pip install", log, timeout=1500, env=env)
        _checked_run([str(vpython), "-m", "pip", "check"], "pip check", log, timeout=300, env=env)
        _checked_run([str(vpython), "-m", "pip", "install", "-q", *TEST_PACKAGES], "installing pytest", log,
                     timeout=600, env=env)
        marker.write_text(f"{time.strftime('%Y-%m-%d %H:%M:%S')} python {python_version} {python}\n")
    prune(cache, keep=venv)
    return venv


def prune(cache: Path, keep: Path) -> None:
    """Remove other space-venv-* folders (several GB each) that no running build holds."""
    for old in cache.glob("space-venv-*"):
        if old == keep or not old.is_dir():
            continue
        key = old.name.rsplit("-", 1)[-1]
        with locked(cache / f"space-venv-{key}.lock", wait=False) as free:
            if free:
                print(f"  pruning {old}")
                shutil.rmtree(old, ignore_errors=True)
                with contextlib.suppress(OSError):
                    (cache / f"space-venv-{key}.lock").unlink()


# --- serving --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, chars: int = 6000) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[-chars:]
    except OSError:
        return ""


def wait_until_serving(process: subprocess.Popen, url: str, app_log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            print(_tail(app_log), file=sys.stderr)
            raise BuildError(f"the app exited with status {process.returncode} before serving (its log is above)")
        try:
            with urllib.request.urlopen(url + "config", timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(1)
    print(_tail(app_log), file=sys.stderr)
    raise BuildError(f"the app did not serve {url} within {timeout:.0f} s (its log is above)")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(15)


# Run by the Space venv's Python: one request to /run, as a visitor's client would send it.
CLIENT = r"""
import json, sys
from gradio_client import Client, handle_file
url, clip, question = sys.argv[1:4]
client = Client(url, verbose=False)
api = client.view_api(print_info=False, return_format="dict")
result = client.predict(video=handle_file(clip), question=question, frames=8, inner_layer=None,
                        max_new_tokens=8, api_name="/run")
print("RESULT " + json.dumps({"endpoints": sorted(api["named_endpoints"]), "outputs": [
    o if isinstance(o, (str, int, float, type(None))) else repr(type(o)) for o in result]}))
"""


def answer_one_request(vpython: Path, url: str, clip: Path, app_log: Path, env: dict[str, str]) -> dict:
    try:
        result = _run([str(vpython), "-c", CLIENT, url, str(clip), QUESTION], timeout=REQUEST_TIMEOUT, env=env)
    except subprocess.TimeoutExpired:
        print(_tail(app_log), file=sys.stderr)
        raise BuildError(f"the request to /run took longer than {REQUEST_TIMEOUT:.0f} s (the app's log is above)") from None
    line = next((x for x in result.stdout.splitlines() if x.startswith("RESULT ")), None)
    if result.returncode or line is None:
        print(result.stdout[-3000:], result.stderr[-3000:], _tail(app_log), sep="\n", file=sys.stderr)
        last = next((x for x in reversed(result.stderr.splitlines()) if x.strip()), "no output")
        raise BuildError(f"the request to /run failed: {last.strip()[:300]}")
    answer = json.loads(line[len("RESULT "):])
    outputs = answer["outputs"]
    if len(outputs) < 3:
        raise BuildError(f"/run returned {len(outputs)} outputs, expected the banner and two answers")
    banner, baseline, compressed = outputs[:3]
    if not isinstance(banner, str) or "toy model" not in banner or "could not be loaded" not in banner:
        raise BuildError(f"the banner does not say the app fell back to the toy model: {str(banner)[:200]!r}")
    for name, text in (("baseline", baseline), ("compressed", compressed)):
        if not isinstance(text, str) or not text.strip():
            raise BuildError(f"/run returned no {name} answer ({text!r})")
    return answer


def space_versions(vpython: Path, env: dict[str, str]) -> str:
    code = ("import platform; from importlib.metadata import version; "
            "print(f'python {platform.python_version()}, ' + ', '.join(f'{n} {version(n)}' for n in "
            "('torch', 'torchvision', 'transformers', 'gradio', 'gradio_client', 'spaces')))")
    result = _run([str(vpython), "-c", code], timeout=300, env=env)
    if result.returncode:
        raise BuildError(f"the Space venv cannot import its stack: {result.stderr.strip().splitlines()[-1:]}")
    return result.stdout.strip()


def junit_skips(junit: Path) -> tuple[list[tuple[str, str]], int]:
    """([(test, skip reason)], number of tests that ran) from pytest's JUnit XML report."""
    import xml.etree.ElementTree as ET

    if not junit.is_file():
        return [], 0
    skipped, ran = [], 0
    for case in ET.parse(junit).getroot().iter("testcase"):
        skip = case.find("skipped")
        if skip is None:
            ran += 1
        else:
            skipped.append((f"{case.get('classname')}.{case.get('name')}", skip.get("message") or ""))
    return skipped, ran


def run_space_venv_tests(vpython: Path, workdir: Path, env: dict[str, str]) -> str:
    """SPACE_VENV_TESTS in the Space venv, stc imported from the checkout; none may skip."""
    missing = [t for t in SPACE_VENV_TESTS if not (ROOT / t).is_file()]
    if missing:
        raise BuildError(f"{', '.join(missing)} does not exist")
    junit = workdir / "junit.xml"
    cmd = [str(vpython), "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", f"--junitxml={junit}",
           *SPACE_VENV_TESTS]
    try:
        result = _run(cmd, timeout=900, cwd=ROOT, env=env)
    except subprocess.TimeoutExpired:
        raise BuildError("the tests in the Space venv took longer than 900 s") from None
    output = result.stdout + result.stderr
    summary = next((x for x in reversed(output.splitlines()) if x.strip()), "")
    if result.returncode:
        print(output[-6000:], file=sys.stderr)
        raise BuildError(f"{' '.join(SPACE_VENV_TESTS)} failed in the Space venv: {summary.strip('= ')}")
    skipped, ran = junit_skips(junit)
    unexpected = [(test, why) for test, why in skipped if not any(ok in why for ok in EXPECTED_SKIPS)]
    if unexpected or not ran:
        print(output[-6000:], file=sys.stderr)
        if not ran:
            raise BuildError(f"{' '.join(SPACE_VENV_TESTS)} ran no test in the Space venv")
        test, why = unexpected[0]
        raise BuildError(f"{len(unexpected)} test(s) skipped in the Space venv, where transformers' processors must "
                         f"load (the first: {test}: {why})")
    return summary.strip("= ")


# --- the build ------------------------------------------------------------------------------


def main() -> int:
    times: dict[str, float] = {}
    phase_start = time.monotonic()

    def phase(name: str) -> None:
        nonlocal phase_start
        now = time.monotonic()
        times[name] = now - phase_start
        phase_start = now

    workdir = Path(tempfile.mkdtemp(prefix="stc-space-build-"))
    log = workdir / "pip.log"
    process = None
    try:
        print("space build: checking the front matter against requirements.txt and pyproject.toml")
        meta = check_agreement()
        wanted = meta["python_version"]
        python = find_interpreter(wanted)
        have = check_interpreter(python, wanted)
        print(f"  python_version {wanted}: {python} (Python {have}); gradio {meta['sdk_version']}")
        phase("checks")

        print("space build: the Space venv")
        venv = build_venv(python, wanted, meta, log)
        vpython = venv / "bin" / "python"
        phase("install")

        app_dir = workdir / "app"
        app_dir.mkdir()
        copied = copy_published(ROOT, app_dir, published_patterns())
        if not (app_dir / meta["app_file"]).is_file():
            raise BuildError(f"space.yml's files do not include the app_file {meta['app_file']}")
        port = free_port()
        url = f"http://127.0.0.1:{port}/"
        app_env = _clean_env(
            SYSTEM="spaces", SPACE_ID=SPACE_ID, SPACE_AUTHOR_NAME=SPACE_ID.split("/")[0],
            SPACE_REPO_NAME=SPACE_ID.split("/")[1], HF_HUB_OFFLINE="1", HF_HOME=str(workdir / "hf-home"),
            GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port), GRADIO_ANALYTICS_ENABLED="False",
            GRADIO_TEMP_DIR=str(workdir / "gradio-tmp"), PYTHONUNBUFFERED="1",
            PATH=f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        )
        print(f"space build: starting {meta['app_file']} ({copied} published files) as Space {SPACE_ID} on {url}")
        app_log = workdir / "app.log"
        with open(app_log, "w") as out:
            process = subprocess.Popen([str(vpython), meta["app_file"]], cwd=app_dir, env=app_env, stdout=out,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        wait_until_serving(process, url, app_log, START_TIMEOUT)
        phase("start")

        clips = sorted((app_dir / "examples").glob("*.mp4"))
        if not clips:
            raise BuildError("the published files hold no examples/*.mp4 to ask about")
        clip = next((c for c in clips if c.name == "earth_rotation.mp4"), clips[0])
        client_env = _clean_env(HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False", HF_HOME=str(workdir / "hf-home"))
        answer = answer_one_request(vpython, url, clip, app_log, client_env)
        stop(process)
        phase("request")
        print(f"  /run on examples/{clip.name}: baseline {answer['outputs'][1][:60]!r}, "
              f"compressed {answer['outputs'][2][:60]!r}")

        print(f"space build: {' '.join(SPACE_VENV_TESTS)} in the Space venv")
        tests = run_space_venv_tests(vpython, workdir, _clean_env())
        phase("tests")
        versions = space_versions(vpython, _clean_env())
        phase("versions")
        print(f"space build passed: {versions}")
        print(f"  endpoints {', '.join(answer['endpoints'])}; tests: {tests}")
        print("  seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in times.items()) + f"; venv {venv}")
        return 0
    except NoInterpreter as err:
        print(f"space build: no interpreter: {err}", file=sys.stderr)
        return EXIT_NO_PYTHON
    except BuildError as err:
        print(f"space build FAILED: {err}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        if process is not None:
            stop(process)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
