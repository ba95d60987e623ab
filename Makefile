# One command per job on a fresh machine: `make test` installs what the tests need into .venv
# (and Debian's Chromium for the browser test) and runs them; `make demo` starts the app.
# CI (.ci/run) runs `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
# The browser test drives this Chromium through Playwright; Playwright's own browser downloads
# are never used.
CHROMIUM ?= /usr/bin/chromium

$(PY):
	python3 -m venv $(VENV)

.PHONY: install test test-vllm bench demo chromium
# torch: the CPU build pinned in constraints-cpu.txt. Taken from what pip already has without
# any index (a local wheel in pip's find-links, or already installed) when it can be; otherwise
# from PyTorch's CPU wheel index, so a CPU machine never pulls PyPI's multi-GB CUDA build.
# Override: `make test TORCH_INDEX=<url>`, or TORCH_INDEX= (empty) for PyPI's default build.
TORCH_VERSION ?= $(shell sed -n 's/^torch==//p' constraints-cpu.txt)
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu

install: $(PY)
	$(PY) -m pip install -q --upgrade pip
	@$(PY) -m pip install -q --no-index --no-deps "torch==$(TORCH_VERSION)" 2>/dev/null \
	  || $(PY) -m pip install -q --no-deps "torch==$(TORCH_VERSION)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PY) -m pip install -q -c constraints-cpu.txt -e ".[app,test,toy]"

# Idempotent: installs Debian's chromium only when $(CHROMIUM) is missing (as root, or through
# passwordless sudo). Without it the browser test skips, and fails under CI=true.
chromium:
	@if [ ! -x "$(CHROMIUM)" ]; then \
	  if [ "$$(id -u)" -eq 0 ]; then sudo=""; \
	  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo -n"; \
	  else echo "chromium: $(CHROMIUM) is missing and apt-get needs root; the browser test will skip (and fail under CI=true)"; exit 0; fi; \
	  echo "chromium: installing Debian's chromium for the browser test"; \
	  $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq chromium >/dev/null \
	    || echo "chromium: apt-get install chromium failed; the browser test will skip (and fail under CI=true)"; \
	fi

test: install chromium
	$(PY) -m pytest -q
	$(MAKE) --no-print-directory test-vllm

# The vLLM plugin's tests, in their own venv (vLLM's CPU build pins transformers <5.20 and torch
# 2.13.0+cpu), built by tests/vllm/env.py from constraints-vllm.txt and cached in ~/.cache/stc
# (STC_VLLM_CACHE): minutes the first time, seconds after. This checkout's stc is installed into
# it on every run. torch comes from the local wheel, else TORCH_INDEX, as for .venv.
test-vllm:
	TORCH_INDEX="$(TORCH_INDEX)" python3 tests/vllm/env.py test

# vLLM's CPU build with its workarounds (README, "Serving with vLLM"): .venv-vllm becomes a link
# to the venv test-vllm uses (same recipe and cache), with this checkout's stc installed.
.PHONY: vllm-cpu-env
VLLM_VENV ?= .venv-vllm
vllm-cpu-env:
	TORCH_INDEX="$(TORCH_INDEX)" python3 tests/vllm/env.py link $(VLLM_VENV)

demo: install
	$(PY) app.py

bench: install
	$(PY) benchmarks/compress_speed.py
