"""The vLLM environment is what the README says: vLLM's CPU build, this checkout's stc with its
vllm.general_plugins entry point, and every stc dependency met except transformers' pin."""

from importlib.metadata import distribution, entry_points
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]


def test_the_entry_point_is_this_checkouts():
    (point,) = [p for p in entry_points(group="vllm.general_plugins") if p.name == "stc"]
    assert point.value == "stc.integrations.vllm:register"
    import stc

    assert Path(stc.__file__).resolve().parent == ROOT / "stc"


def test_every_stc_dependency_but_transformers_is_met():
    """stc is installed here without dependencies only because of transformers' pin (5.24 for the
    transformers adapters; vLLM 0.32 pins <5.20): everything else it declares must hold."""
    unmet = []
    for line in distribution("stc").requires or []:
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        if req.name == "transformers":
            continue
        try:
            version = distribution(req.name).version
        except Exception:
            unmet.append(f"{req} (missing)")
            continue
        if not req.specifier.contains(version, prereleases=True):
            unmet.append(f"{req} (found {version})")
    assert not unmet, unmet


def test_plugin_modules_import_under_vllms_transformers():
    import transformers

    from stc.integrations.vllm import qwen2_5_vl, stage1  # noqa: F401

    assert transformers.__version__.startswith("5.19"), transformers.__version__
