"""The architecture as the README's "Architecture" section draws it: layers that import only
downwards, no import circle, light modules that stay light, every module importable alone."""

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "stc"

# Lower numbers are lower layers. A module may import modules of lower layers, and of its own
# layer only inside its own subpackage (stc.models.base -> stc.models.inner).
LAYERS = {
    "stc.arith": 0,  # shared arithmetic: rounding, budgets, segment means, the depth rule
    "stc.results": 0,  # what the stages and an answer produce, as plain data
    "stc.messages": 0,
    "stc.checks": 0,  # checks of user-given numbers, worded alike in every layer  # errors as one short line, for every layer that words them
    "stc.compress": 1,  # stage 1, pure tensor functions (stc.compress.st: stc-st's, on stc's)
    "stc.stream": 2,  # stage 1 over a stream of frames (uses stc.compress: one layer up)
    "stc.merge": 1,  # stage 2, pure tensor functions
    "stc.attention": 1,  # attention rows recomputed from q/k
    "stc.video": 1,  # decoding and sampling, one module per job (frames, header, sizing, readers, stream, ...)
    "stc.methods": 3,  # the registry and the peers (a method that streams builds its StreamCompressor)
    "stc.config": 4,  # STCConfig (validates method names through the registry)
    "stc.flop_count": 4,  # the paper's FLOPs convention (the function stc.flops)
    "stc.models": 5,  # one adapter per family, processors, stage-2 hooks, VideoLLM
    "stc.viz": 6,
    "stc.bench": 6,
    "stc.eval": 6,  # the evaluation harness, one module per job (manifest, prompts, parsing, ...)
    "stc.lmms_plugin": 6,
    "stc.demo": 6,
    "stc.integrations": 6,  # serving engines (stc.integrations.vllm: the vLLM plugin)
    "stc.toy": 7,  # synthetic video QA and the toy model's trainer (asks as stc.eval asks)
    "stc.demo.tabs": 8,  # the app's page, one module per tab (its examples include stc.toy's synthetic clips)
}
# Modules that need an optional extra's package (absent from .venv): imported alone only where
# it is installed (the vLLM ones in the vLLM environment, tests/vllm).
OPTIONAL = {f"stc.integrations.vllm.{name}": "vllm" for name in ("model", "qwen2_5_vl", "qwen3_vl")}


def _installed(package: str) -> bool:
    """A real package, not a namespace match on a folder (tests/vllm is one under pytest)."""
    spec = importlib.util.find_spec(package)
    return spec is not None and spec.origin is not None
LIGHT = ["stc", "stc.arith", "stc.results", "stc.messages", "stc.checks", "stc.compress", "stc.compress.st", "stc.stream", "stc.merge", "stc.methods", "stc.config", "stc.flop_count",
         "stc.video", "stc.viz"]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(node) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """stc modules imported by ``path`` anywhere (functions included), except under TYPE_CHECKING."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node):
        if _is_type_checking(node):
            return
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("stc"):
                found.add(target)
                found.update(f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in known)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("stc"))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    found.discard(name)
    return found


def _layer(module: str) -> tuple[str, int]:
    for prefix in sorted(LAYERS, key=len, reverse=True):
        if module == prefix or module.startswith(prefix + "."):
            return prefix, LAYERS[prefix]
    raise AssertionError(f"{module} is in no layer: add it to LAYERS and to the README's Architecture section")


@pytest.fixture(scope="module")
def graph():
    modules = _modules()
    return {name: _imports(name, path, set(modules)) for name, path in modules.items()}


def test_every_import_goes_down(graph):
    wrong = []
    for module, deps in graph.items():
        if module == "stc":  # the public API re-exports every layer
            continue
        home, level = _layer(module)
        for dep in deps:
            if dep == "stc":
                wrong.append(f"{module} -> stc (import the module it needs, not the package)")
                continue
            dep_home, dep_level = _layer(dep)
            if dep_level > level or (dep_level == level and dep_home != home):
                wrong.append(f"{module} (layer {level}) -> {dep} (layer {dep_level})")
    assert not wrong, "\n".join(sorted(wrong))


def test_no_import_circle(graph):
    state: dict[str, int] = {}

    def visit(node, path):
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                cycle = path[path.index(dep):] + [dep] if dep in path else [node, dep]
                raise AssertionError("import circle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep, path + [dep])
        state[node] = 2

    for module in sorted(graph):
        if module != "stc" and module not in state:
            visit(module, [module])


def test_every_module_imports_alone_and_light_ones_stay_light():
    """Each module imported first in a fresh stc (catches import-order dependencies); the light
    ones import no transformers model code. Three processes at once (the modules in two halves,
    the light ones in a third): each is one interpreter importing, so two cores take them
    about twice as fast as one after another."""
    modules = [m for m in _modules() if not m.endswith("__main__")
               and (m not in OPTIONAL or _installed(OPTIONAL[m]))]
    alone = """
import importlib, sys
failed = []
for name in {modules!r}:
    for key in [k for k in sys.modules if k == "stc" or k.startswith("stc.")]:
        del sys.modules[key]
    try:
        importlib.import_module(name)
    except Exception as err:
        failed.append(f"{{name}}: {{type(err).__name__}}: {{err}}")
print("\\n".join(failed))
sys.exit(1 if failed else 0)
"""
    light = f"""
import importlib, sys
for name in {LIGHT!r}:
    importlib.import_module(name)
heavy = sorted(k for k in sys.modules if k.startswith("transformers.models."))
print(heavy[:5])
sys.exit(1 if heavy else 0)
"""
    scripts = [alone.format(modules=modules[0::2]), alone.format(modules=modules[1::2]), light]
    runs = [subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for script in scripts]
    try:
        done = [(run.communicate(timeout=300), run.returncode) for run in runs]
    finally:  # none left running past a timeout
        for run in runs:
            run.kill()
    for (out, err), code in done[:2]:
        assert code == 0, out + err[-2000:]
    (out, err), code = done[2]
    assert code == 0, "light modules pulled transformers' model code: " + out + err[-2000:]


def test_no_module_is_oversized():
    """No module over 500 lines: a longer one has more than one job (split it by job, as
    stc.eval, stc.video, stc.viz and VideoLLM's stc.models modules are)."""
    long = {name: len(path.read_text().splitlines()) for name, path in _modules().items()}
    over = {name: n for name, n in long.items() if n > 500}
    assert not over, over
