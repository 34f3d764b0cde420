# lit_deep: the two commands of the README are `make demo` and `make test`; each does its own set-up.
# Set-up: a virtual environment in .venv, PyTorch's CPU build (installed first, so that the `torch>=...`
# requirement does not pull a multi-GB CUDA build), the package with its dev extra, and the real
# Fashion-MNIST from the Debian package where apt is available (otherwise the library downloads it).
VENV ?= .venv
PYTHON ?= python3
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.lit_deep-installed
DATA_DIR := /usr/share/datasets/fashion-mnist

.PHONY: setup data demo test test-gpu docs lint bench clean

setup: $(STAMP) data

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

data:
	@if ls $(DATA_DIR)/train-images-idx3-ubyte.gz >/dev/null 2>&1; then \
		echo "Fashion-MNIST: $(DATA_DIR)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || \
		{ apt-get update -qq >/dev/null && apt-get install -y -qq dataset-fashion-mnist >/dev/null; } || \
		echo "apt could not install dataset-fashion-mnist; lit_deep will download the data instead"; \
	else \
		echo "Fashion-MNIST not installed system-wide; lit_deep will download it into ~/.cache/lit_deep"; \
	fi

demo: setup
	$(VENV)/bin/lit-deep demo

test: setup
	$(PY) -m pytest

# On a machine with a CUDA GPU: the device-generic tests on cuda, then the GPU check script (under 5 minutes).
test-gpu: setup
	$(PY) -m pytest -m cuda -p no:cacheprovider
	$(PY) benchmarks/gpu.py

# The documentation site: MkDocs + Material, the API reference from the docstrings, the tutorials executed at
# build time under LIT_DEEP_QUICK=1 (set DOCS_QUICK=0 for their full settings); strict: any warning fails.
DOCS_STAMP := $(VENV)/.lit_deep-docs-installed
DOCS_QUICK ?= 1
export NO_MKDOCS_2_WARNING := 1  # Material 9.8 prints a banner about its successor on every build

$(DOCS_STAMP): pyproject.toml $(STAMP)
	$(PY) -m pip install -q -e ".[docs]"
	touch $(DOCS_STAMP)

docs: setup $(DOCS_STAMP)
	LIT_DEEP_QUICK=$(DOCS_QUICK) IPYTHONDIR=$(CURDIR)/docs/ipython $(VENV)/bin/mkdocs build --strict --site-dir site

lint: setup
	$(VENV)/bin/ruff check lit_deep tests benchmarks
	$(VENV)/bin/ruff format --check lit_deep tests benchmarks
	$(VENV)/bin/mypy

bench: setup
	OMP_NUM_THREADS=1 $(PY) benchmarks/epoch_time.py --repeats 5

clean:
	rm -rf $(VENV) build dist *.egg-info runs lightning_logs site
