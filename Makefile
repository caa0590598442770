# Two commands: `make test` and `make demo`. Both create .venv when missing.
PYTHON ?= python3
TORCH_SPEC ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo install clean bench

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip setuptools wheel
	$(BIN)/python -m pip install "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	NUMBA_CACHE_DIR=$(CURDIR)/$(VENV)/numba-cache $(BIN)/python -m pytest

demo: $(STAMP)
	NUMBA_CACHE_DIR=$(CURDIR)/$(VENV)/numba-cache $(BIN)/npeff demo --out npeff-demo --overwrite

bench: $(STAMP)
	NUMBA_CACHE_DIR=$(CURDIR)/$(VENV)/numba-cache $(BIN)/python bench/projection.py
	$(BIN)/python bench/store.py
	NUMBA_CACHE_DIR=$(CURDIR)/$(VENV)/numba-cache $(BIN)/python bench/build.py
	NUMBA_CACHE_DIR=$(CURDIR)/$(VENV)/numba-cache $(BIN)/python bench/build.py --memory
	$(BIN)/python bench/decompose.py
	$(BIN)/python bench/subnormal.py

clean:
	rm -rf $(VENV) build *.egg-info
