# Two entry points do all the set-up on a fresh machine (Python 3.11 + make):
#   make demo   - create .venv, install, anonymize the built-in demo clip (or ARGS="in.mp4 -o out.mp4")
#   make test   - create .venv, install with test extras, lint, run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP_FLAGS := --quiet --no-cache-dir --disable-pip-version-check

$(BIN)/.installed: pyproject.toml
	bash tools/install_system_deps.sh
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install $(PIP_FLAGS) -e '.[dev,gstreamer]' || \
	  $(BIN)/python -m pip install $(PIP_FLAGS) -e '.[dev]'
	touch $@

.PHONY: demo test bench lint
demo: $(BIN)/.installed
	$(BIN)/masquerade run $(ARGS)

# Models derived at run time (the ONNX identity encoder) are cached inside the checkout.
test: $(BIN)/.installed
	$(BIN)/ruff check masquerade tests tools
	MASQUERADE_CACHE=$(CURDIR)/.cache $(BIN)/python -m pytest

bench: $(BIN)/.installed
	$(BIN)/python tools/bench/pipeline.py --out bench-results.json

lint: $(BIN)/.installed
	$(BIN)/ruff check masquerade tests tools
