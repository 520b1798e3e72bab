# The two commands: `make demo` and `make test`. Both create .venv on first use.
# `make docs` builds the documentation site into site/ (mkdocs.yml; any warning fails).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint typecheck docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-demo: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[uvloop,progress]'
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

demo: $(VENV)/.installed-demo
	$(BIN)/python examples/demo.py

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy

# The tests start thousands of processes that import procpool and the test helpers: compiled once
# here, since Python writes no bytecode itself where PYTHONDONTWRITEBYTECODE is set.
# They mostly wait on their children, so 2 pytest processes share even 2 cores well (4 overload
# such a machine once other work runs beside them); each takes whole files (--dist loadfile), so a
# module's fixtures run once.
test: lint typecheck
	$(BIN)/python -m compileall -q src tests
	$(BIN)/python -m pytest -n 2 --dist loadfile

docs: $(VENV)/.installed-dev
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache site

# The peers benchmark (benchmarks/run.py), with the worker-count sweep and the head-of-line scenario:
# `make bench` (~20 min on 2 cores) rewrites docs/benchmarks.md and docs/img/; `make bench-quick`
# (~3 min) only prints and saves to benchmarks/results/.
.PHONY: bench bench-quick

$(VENV)/.installed-bench: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[bench]'
	touch $@

bench: $(VENV)/.installed-bench
	$(BIN)/python -m benchmarks.run --mode full --update-docs --command "make bench"

bench-quick: $(VENV)/.installed-bench
	$(BIN)/python -m benchmarks.run --mode quick --command "make bench-quick"

# The same chaos scenario (random SIGKILLs of workers) against ProcessPoolExecutor, loky and pebble
# (benchmarks/chaos_compare.py, a few minutes): rewrites benchmarks/results/chaos_compare.json and
# prints the table that docs/reliability.md shows.
.PHONY: chaos-compare

chaos-compare: $(VENV)/.installed-bench
	$(BIN)/python -m benchmarks.chaos_compare
# The soak test's long form (tests/soak.py): 200,000 mixed tasks through one pool, printing the
# parent's RSS, fds, threads and children as it goes (docs/reliability.md records the figures).
# Its short form runs in `make test` (tests/test_soak.py).
.PHONY: soak

soak: $(VENV)/.installed-dev
	$(BIN)/python tests/soak.py --tasks 200000
