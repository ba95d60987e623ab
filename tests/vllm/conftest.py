"""The vLLM tests run in the vLLM environment (`make test-vllm`, tests/vllm/env.py), never in the
project's .venv: there vllm is absent and these files are not collected."""

import importlib.util
import os

import pytest

_SPEC = importlib.util.find_spec("vllm")
# origin None: a namespace match on this very folder (pytest puts tests/ on sys.path), not vLLM
IN_VLLM_ENV = _SPEC is not None and _SPEC.origin is not None
if not IN_VLLM_ENV:
    collect_ignore_glob = ["test_*.py"]


def need(condition: bool, reason: str) -> None:
    """Skip locally when ``condition`` fails; under CI=true fail instead (nothing may skip there)."""
    if not condition:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(reason)
        pytest.skip(reason)
