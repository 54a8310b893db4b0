# repgls: the two commands (make demo, make test) plus bench and lint.
# Each target creates .venv if missing and installs the package (once per pyproject change).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.repgls-installed
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1
PYTEST_ARGS ?=

.PHONY: install demo test bench bench-power gpu-check lint clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_PINS)
	$(PY) -m pip install -q -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/repgls demo

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

# The CPU benchmarks that print figures on their own (minutes each; docs/results.md has their figures).
BENCH_SCRIPTS := mine_openi mine_speed phantom_speed phantom_calibration loader_speed step_time \
                 rgn_generalisation llm_http_throughput
bench: $(STAMP)
	@for f in $(BENCH_SCRIPTS); do echo "== benchmarks/$$f.py"; $(PY) benchmarks/$$f.py || exit 1; done

# The power bench (13 methods x 5 seeds, ~17 min on 2 cores), the papers' claims on it, then the hedge sweep
# (~15 min more: its default level is the bench itself, and every level shares the bench's backbone).
BENCH_OUT ?= bench_out/power
bench-power: $(STAMP)
	$(VENV)/bin/repgls bench --config configs/bench/phantom-small.yaml --out $(BENCH_OUT)/h-default --no-progress
	$(PY) benchmarks/paper_claims.py $(BENCH_OUT)/h-default
	$(PY) benchmarks/hedge_sweep.py --config configs/bench/phantom-small.yaml --out $(BENCH_OUT) \
	    --levels default,0.0,0.1,0.25,0.4 --plot $(BENCH_OUT)/hedge_sweep.png

# On a machine with a GPU: the CUDA path end to end (docs/gpu.md); add GPU_CHECK_ARGS=--dry-run on a CPU.
GPU_CHECK_ARGS ?=
gpu-check: $(STAMP)
	bash benchmarks/gpu_check.sh $(GPU_CHECK_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
