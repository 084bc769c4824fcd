# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
# Each creates or updates .venv itself; nothing is installed by hand.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint venv browser benchmark benchmark-demo benchmark-sweep benchmark-reads clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first, pinned to the CPU wheel unless a torch is already there (a GPU machine brings its own):
	# an unpinned resolve would pull gigabytes of CUDA packages.
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install --quiet "torch==2.13.0"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/contentforge demo

# The gallery's browser test drives Debian's chromium + chromium-driver, which pip cannot install:
# installed here when missing (as root, where apt-get exists), so `make test` passes on a new machine.
browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		echo "installing chromium and chromium-driver for the browser test"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium chromium-driver \
		|| { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium chromium-driver; }; \
	else echo "chromium/chromium-driver missing and cannot be installed here: the browser test will say so"; fi

# lint-imports: the dependency contracts in pyproject.toml (layers, no frameworks in the library, no
# cycles); mypy: the library's types.
test: $(STAMP) browser
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy contentforge
	$(BIN)/python -m pytest --durations=25

# The inner loop: everything but the tests marked slow (flows, servers, pipelines).
test-fast: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy contentforge

benchmark: $(STAMP)
	$(BIN)/python benchmarks/orchestration.py

# The demo's batch (tiny pipeline, 50 pieces) against a bare loop of its own requests at the best
# split of the cores; the scale curve (1, 3, 10 batches of 50 and one of 500); API reads at 100k pieces.
benchmark-demo: $(STAMP)
	$(BIN)/python benchmarks/orchestration.py --profile tiny --batches 1 --pieces 50

benchmark-sweep: $(STAMP)
	$(BIN)/python benchmarks/orchestration.py --sweep

benchmark-reads: $(STAMP)
	$(BIN)/python benchmarks/seed_pieces.py
	$(BIN)/python benchmarks/api_reads.py
	$(BIN)/python benchmarks/seed_pieces.py --drop

clean:
	rm -rf $(VENV) .contentforge .pytest_cache .ruff_cache .mypy_cache .import_linter_cache
