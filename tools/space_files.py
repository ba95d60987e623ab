"""What the Hugging Face Space reads, checked before anything is built (stdlib only; used by
tools/space_build.py): README.md's front matter and its agreement with requirements.txt,
pyproject.toml and LICENSE, and the files .github/workflows/space.yml publishes."""

from __future__ import annotations

import ast
import fnmatch
import re
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# What the Space receives when space.yml's list cannot be read.
DEFAULT_PUBLISHED = ["app.py", "README.md", "requirements.txt", "LICENSE", "stc/**", "examples/**", "docs/**"]


class BuildError(Exception):
    """A reason the Space would not build or serve; one line."""


class NoInterpreter(BuildError):
    """No interpreter for the front matter's python_version on this machine."""


def front_matter(text: str) -> dict[str, str]:
    """Top-level scalar keys of README.md's YAML front matter (lists and nesting are skipped)."""
    lines = text.splitlines()
    if not lines or lines[0].strip() != "---":
        raise BuildError("README.md does not start with a YAML front matter (---)")
    try:
        end = next(i for i, line in enumerate(lines[1:], 1) if line.strip() == "---")
    except StopIteration:
        raise BuildError("README.md's front matter has no closing ---") from None
    values = {}
    for line in lines[1:end]:
        match = re.match(r"^([A-Za-z_][\w-]*)\s*:\s*(.*?)\s*$", line)
        if not match or not match.group(2):
            continue
        value = match.group(2)
        if value[0] in "\"'":
            value = value[1:value.index(value[0], 1)] if value.count(value[0]) >= 2 else value[1:]
        else:
            value = re.sub(r"\s+#.*$", "", value)
        values[match.group(1)] = value
    return values


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_specs(text: str) -> dict[str, str]:
    """{normalised name: specifier} of a requirements file's plain requirement lines."""
    specs = {}
    for raw in text.splitlines():
        line = raw.split(" #")[0].strip()
        if not line or line.startswith(("#", "-")):
            continue
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*([^;]*)", line)
        if match:
            specs[_norm(match.group(1))] = match.group(3).strip()
    return specs


def version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text))


def admits(spec: str, version: str) -> bool:
    """Whether a comma-separated specifier (==, !=, >=, <=, >, <, ~=; no wildcards) admits
    ``version``. Versions are compared as tuples padded with zeros, which is enough for X.Y.Z."""
    have = version_tuple(version)
    for clause in filter(None, (c.strip() for c in spec.split(","))):
        match = re.match(r"^(~=|==|!=|>=|<=|>|<)\s*([\d.]+)$", clause)
        if not match:
            raise BuildError(f"cannot read the version specifier {clause!r}")
        op, bound = match.group(1), version_tuple(match.group(2))
        width = max(len(have), len(bound))
        a, b = have + (0,) * (width - len(have)), bound + (0,) * (width - len(bound))
        ok = {"==": a == b, "!=": a != b, ">=": a >= b, "<=": a <= b, ">": a > b, "<": a < b,
              "~=": a >= b and a[:len(bound) - 1] == bound[:len(bound) - 1]}[op]
        if not ok:
            return False
    return True


def _pyproject_value(text: str, key: str) -> str | None:
    match = re.search(rf"^{key}\s*=\s*\"([^\"]*)\"", text, re.M)
    return match.group(1) if match else None


def _pyproject_extra(text: str, extra: str) -> list[str]:
    match = re.search(rf"^{extra}\s*=\s*(\[[^\]]*\])", text, re.M)
    return ast.literal_eval(match.group(1)) if match else []


def check_agreement(root: Path = ROOT) -> dict[str, str]:
    """The front matter, read and checked against requirements.txt, pyproject.toml and LICENSE.
    Returns the front matter; raises BuildError naming the first disagreement."""
    meta = front_matter((root / "README.md").read_text(encoding="utf-8"))
    for key in ("sdk", "sdk_version", "python_version", "app_file"):
        if not meta.get(key):
            raise BuildError(f"README.md's front matter has no {key}")
    if meta["sdk"] != "gradio":
        raise BuildError(f"README.md's front matter says sdk: {meta['sdk']}; this build simulates sdk: gradio")
    if not re.fullmatch(r"3\.\d+(\.\d+)?", meta["python_version"]):
        raise BuildError(f"front matter python_version {meta['python_version']!r} is not a 3.X version")
    if not (root / meta["app_file"]).is_file():
        raise BuildError(f"front matter app_file {meta['app_file']} does not exist")
    specs = requirement_specs((root / "requirements.txt").read_text(encoding="utf-8"))
    if "gradio" in specs and specs["gradio"] != f"=={meta['sdk_version']}":
        raise BuildError(f"requirements.txt pins gradio{specs['gradio']} but the front matter's sdk_version is "
                         f"{meta['sdk_version']}: they must agree")
    pyproject = (root / "pyproject.toml").read_text(encoding="utf-8")
    requires = _pyproject_value(pyproject, "requires-python")
    if requires and not admits(requires, meta["python_version"]):
        raise BuildError(f"pyproject's requires-python {requires} does not admit the front matter's "
                         f"python_version {meta['python_version']}")
    for requirement in _pyproject_extra(pyproject, "app"):
        name, spec = next(iter(requirement_specs(requirement).items()))
        if name == "gradio" and spec and not admits(spec, meta["sdk_version"]):
            raise BuildError(f"pyproject's app extra wants gradio{spec}, which excludes the front matter's "
                             f"sdk_version {meta['sdk_version']}")
    if meta.get("license") and not (root / "LICENSE").is_file():
        raise BuildError(f"the front matter names license {meta['license']} but LICENSE does not exist")
    return meta


def published_patterns(root: Path = ROOT) -> list[str]:
    """The allow_patterns space.yml uploads to the Space (its `files = [...]`), else a default."""
    workflow = root / ".github" / "workflows" / "space.yml"
    if workflow.is_file():
        match = re.search(r"^\s*files\s*=\s*(\[[^\]]*\])", workflow.read_text(encoding="utf-8"), re.M)
        if match:
            return list(ast.literal_eval(match.group(1)))
    return list(DEFAULT_PUBLISHED)


def copy_published(root: Path, dest: Path, patterns: list[str]) -> int:
    """Copy the files matching ``patterns`` (fnmatch on the relative path, as huggingface_hub's
    allow_patterns; __pycache__ and *.pyc left out, as space.yml does) into ``dest``."""
    count = 0
    for pattern in patterns:
        literal = pattern.split("*")[0]
        base = literal.rsplit("/", 1)[0] if "/" in literal else ""
        if base:  # "stc/**": everything under stc/
            found = [path for path in (root / base).rglob("*") if path.is_file() and "__pycache__" not in path.parts]
        else:  # "app.py": the top folder only (no walk through .git or .venv)
            found = (path for path in root.iterdir() if path.is_file())
        for path in found:
            rel = path.relative_to(root).as_posix()
            if path.suffix == ".pyc" or not fnmatch.fnmatch(rel, pattern) or (dest / rel).exists():
                continue
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest / rel)
            count += 1
    return count
