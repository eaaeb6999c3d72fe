# Two commands do all set-up on a fresh machine with only Python 3:
#   make demo   -- creates .venv when missing, installs everything, runs the end-to-end demo
#   make test   -- creates .venv when missing, installs everything, runs the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast bench docs clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# The CPU build of torch first: an open range would pull a multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	WANDB_SILENT=true $(BIN)/bmi demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

# The docs site into docs/_build/html, warnings as errors: the reference pages are generated from the code, the
# examples in docs/examples/ run (docs/conf.py).
docs: $(STAMP)
	MPLBACKEND=Agg WANDB_MODE=disabled $(BIN)/python -m sphinx -b html -W --keep-going -q docs docs/_build/html
	@echo "docs: open docs/_build/html/index.html"

bench: $(STAMP)
	bash scripts/bench_all.sh

clean:
	rm -rf $(VENV) runs demo_output .bmi_cache wandb docs/_build docs/auto_examples docs/gen_modules
