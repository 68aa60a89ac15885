# Every target creates or refreshes .venv from pyproject.toml first, so each works on a fresh
# machine with only Python 3.11 and access to PyPI.
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
BENCH_STAMP := $(VENV)/.bench-stamp
BENCH_JSON ?=

.PHONY: demo demo-crowdsfl demo-transfer demo-crypto demo-spatial test check bench venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# The main job: a whole CrowdSFL federated-learning task between 5 daemons (5 rounds).
# The main job: a whole CrowdSFL task, then the spatial part (report, committee, rewards).
demo: demo-crowdsfl demo-spatial

demo-crowdsfl: $(STAMP)
	$(BIN)/python -m crowdmesh.daemon.client.cli_demo_crowdsfl

# Transfers between 5 mining daemons, each block followed to every node.
demo-transfer: $(STAMP)
	$(BIN)/python -m crowdmesh.daemon.client.cli_demo_testnet

demo-crypto: $(STAMP)
	$(BIN)/python -m crowdmesh.daemon.client.cli_demo

demo-spatial: $(STAMP)
	$(BIN)/python -m crowdmesh.daemon.client.cli_demo_spatial

check: $(STAMP)
	$(BIN)/ruff check crowdmesh tests bench
	$(BIN)/mypy
	$(BIN)/pytest -q tests/unit/test_purity.py tests/unit/test_imports.py

test: check
	$(BIN)/pytest -q -p no:cacheprovider

# The benchmarks also need the optional groups: Flower (the side-by-side peer of
# bench/crowdsfl.py) and matplotlib (bench/spatial_eval.py's figures).
$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,plots,flower]'
	@touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	@for b in bench/crypto.py bench/ecvrf.py bench/chain.py bench/fl_baselines.py bench/network.py \
	  bench/spatial.py bench/spatial_eval.py bench/crowdsfl.py; do \
	  if [ -f $$b ]; then echo "== $$b"; \
	    $(BIN)/python $$b $$(if [ $$b = bench/crowdsfl.py ]; then echo --scale; fi) \
	      $(if $(BENCH_JSON),--json bench/out/$$(basename $$b .py).json) || exit 1; fi; \
	done

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache
