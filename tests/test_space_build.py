"""The simulated Hugging Face Space build (tools/space_build.py, tools/space_files.py): the front matter agrees with the
files the Space reads, and, on the front matter's Python, the Space's install resolves, app.py
starts as on the Space and answers a request, and transformers' processors load there.

The build needs an interpreter for python_version (pyenv's, $STC_SPACE_PYTHON or pythonX.Y on
PATH): without one it skips, and under CI=true it fails. Its venv is cached outside the repo
(${STC_SPACE_CACHE:-~/.cache/stc}); the first build downloads and installs several GB.
"""

import fnmatch
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ROOT / "tools"
SCRIPT = TOOLS / "space_build.py"
TIMEOUT = 900  # a first build (a fresh venv with torch) takes a few minutes; a cached one ~30 s

sys.path.insert(0, str(TOOLS))  # the build tool is a stdlib script run as `python tools/space_build.py`
import space_build as sb  # noqa: E402
import space_files as sf  # noqa: E402


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


# --- fast: the files agree ----------------------------------------------------------------------


def test_front_matter_agrees_with_requirements_pyproject_and_license():
    meta = sf.check_agreement(ROOT)  # raises BuildError naming the disagreement
    specs = sf.requirement_specs((ROOT / "requirements.txt").read_text())
    assert specs.get("gradio") == f"=={meta['sdk_version']}"
    assert (ROOT / "LICENSE").is_file()
    assert (ROOT / meta["app_file"]).is_file()


def test_space_yml_publishes_what_the_app_needs():
    patterns = sf.published_patterns(ROOT)
    meta = sf.front_matter((ROOT / "README.md").read_text())
    for needed in (meta["app_file"], "README.md", "requirements.txt", "LICENSE", "stc/**", "examples/**",
                   "toy/llava-onevision/**"):  # the toy: the app's model when the hub is out of reach
        assert needed in patterns
    # toy/attempts (scripts and weights not adopted, MBs of them) is not the app's
    assert not any(fnmatch.fnmatch("toy/attempts/validate.py", p) for p in patterns)


def test_front_matter_parser():
    meta = sf.front_matter('---\ntitle: "a: b"\nsdk_version: 6.31.0  # pinned\npython_version: "3.12"\n'
                           "models:\n  - x/y\nempty:\n---\n# body\nsdk: no\n")
    assert meta == {"title": "a: b", "sdk_version": "6.31.0", "python_version": "3.12"}
    with pytest.raises(sf.BuildError):
        sf.front_matter("# no front matter\n")


@pytest.mark.parametrize("spec, version, ok", [
    (">=3.10", "3.12", True), (">=3.10", "3.9", False), (">=3.10,<3.13", "3.13", False),
    ("==6.31.0", "6.31.0", True), ("==6.31.0", "6.31", True), (">=6.31,<7", "6.31.0", True),
    (">=6.31,<7", "7.0.1", False), ("~=3.10", "3.12", True), ("~=3.10.1", "3.11.0", False), ("!=3.11", "3.11", False),
])
def test_specifiers(spec, version, ok):
    assert sf.admits(spec, version) is ok


def _write_project(tmp_path, *, gradio="==6.31.0", requires=">=3.10", app_extra='"gradio>=6.31,<7"', license=True):
    (tmp_path / "README.md").write_text('---\nsdk: gradio\nsdk_version: 6.31.0\napp_file: app.py\n'
                                        'python_version: "3.12"\nlicense: apache-2.0\n---\n')
    (tmp_path / "app.py").write_text("")
    (tmp_path / "requirements.txt").write_text(f"torch==2.11.0\ngradio{gradio}  # sdk\nspaces>=0.40\n")
    (tmp_path / "pyproject.toml").write_text(f'[project]\nrequires-python = "{requires}"\n'
                                             f"[project.optional-dependencies]\napp = [{app_extra}]\n")
    if license:
        (tmp_path / "LICENSE").write_text("Apache-2.0")
    return tmp_path


def test_agreement_check_names_each_disagreement(tmp_path):
    (tmp_path / "ok").mkdir()
    assert sf.check_agreement(_write_project(tmp_path / "ok"))["python_version"] == "3.12"
    for i, (kwargs, words) in enumerate([
        ({"gradio": "==6.30.0"}, "requirements.txt pins gradio==6.30.0"),
        ({"gradio": ">=6"}, "requirements.txt pins gradio>=6"),
        ({"requires": ">=3.13"}, "requires-python >=3.13"),
        ({"app_extra": '"gradio>=7"'}, "app extra wants gradio>=7"),
        ({"license": False}, "LICENSE does not exist"),
    ]):
        folder = tmp_path / str(i)
        folder.mkdir()
        with pytest.raises(sf.BuildError, match=words.replace("(", r"\(")):
            sf.check_agreement(_write_project(folder, **kwargs))


def test_an_interpreter_that_disagrees_with_the_front_matter_fails():
    here = f"{sys.version_info[0]}.{sys.version_info[1]}"
    assert sb.check_interpreter(Path(sys.executable), here).startswith(here)
    with pytest.raises(sf.BuildError, match="python_version 3.2 but"):
        sb.check_interpreter(Path(sys.executable), "3.2")


def test_an_override_interpreter_that_is_missing_is_no_interpreter(monkeypatch, tmp_path):
    monkeypatch.setenv("STC_SPACE_PYTHON", str(tmp_path / "python9.9"))
    with pytest.raises(sf.NoInterpreter):
        sb.find_interpreter("9.9")


def test_the_venv_key_follows_requirements_and_sdk():
    python = Path(sys.executable)
    key = sb.venv_key(python, "3.12", b"torch==2.11.0\n", "6.31.0")
    assert key == sb.venv_key(python, "3.12", b"torch==2.11.0\n", "6.31.0")
    assert key != sb.venv_key(python, "3.12", b"torch==2.10.0\n", "6.31.0")
    assert key != sb.venv_key(python, "3.12", b"torch==2.11.0\n", "6.32.0")


# --- slow: the build ----------------------------------------------------------------------------


@pytest.mark.space
def test_simulated_space_build():
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    try:
        result = subprocess.run([sys.executable, str(SCRIPT)], cwd=ROOT, env=env, capture_output=True, text=True,
                                timeout=TIMEOUT)
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"the simulated Space build took longer than {TIMEOUT} s:\n{err.stdout or ''}{err.stderr or ''}")
    output = result.stdout + result.stderr
    reason = next((line for line in reversed(output.splitlines()) if line.startswith("space build")), output[-300:])
    if result.returncode == sb.EXIT_NO_PYTHON:
        if not in_ci():
            pytest.skip(reason)
        pytest.fail(f"CI=true needs the Space's Python for the simulated build; {reason}")
    assert result.returncode == 0, f"{reason}\n\n{output[-8000:]}"
    print(result.stdout)
