# permitgate: `make demo` to try it, `make test` to check it. Both create .venv on first use.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install services test lint typecheck unit protos protos-check vectors vectors-check demo bench bench-install bench-micro bench-pytest clean

$(STAMP): pyproject.toml clients/python/pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "permitgate needs Python 3.11 or newer ($(PYTHON) is older)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e clients/python -e ".[test]"
	@touch $(STAMP)

install: $(STAMP)

services: install
	$(BIN)/python scripts/ensure_services.py

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

protos: install
	$(BIN)/python scripts/build_protos.py

protos-check: install
	$(BIN)/python scripts/build_protos.py --check

vectors: install
	$(BIN)/python scripts/make_vectors.py

vectors-check: install
	$(BIN)/python scripts/make_vectors.py --check

unit: install
	$(BIN)/pytest -q

test: services lint typecheck protos-check vectors-check unit

demo: install
	$(BIN)/python scripts/demo.py

BENCH_STAMP := $(VENV)/.bench-stamp

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(BIN)/pip install --quiet -e ".[test,bench]"
	@touch $(BENCH_STAMP)

bench-install: $(BENCH_STAMP)

# The gate next to a bare gRPC server, the Cerbos PDP and a naive server (benchmarks/README.md);
# installs h2load (apt-get) and Cerbos (npm pack) itself when missing.
bench: bench-install
	$(BIN)/python -m benchmarks.harness $(BENCH_ARGS)

bench-micro: install
	$(BIN)/pytest benchmarks/micro -q --benchmark-enable -p no:randomly

# The pytest benchmarks: import, in-process gate client, check_many, map proofs.
bench-pytest: services
	$(BIN)/pytest benchmarks -q --benchmark-enable -p no:randomly --ignore=benchmarks/micro

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis demo
