# One command per job on a fresh machine: `make test` installs what the tests need into .venv
# and runs them; `make demo` starts the app. CI (.ci/run) runs `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python

$(PY):
	python3 -m venv $(VENV)

.PHONY: install test bench
install: $(PY)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints-cpu.txt -e ".[app,test]"

test: install
	$(PY) -m pytest -q

bench: install
	$(PY) benchmarks/compress_speed.py
