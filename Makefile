# `make demo` sets everything up and runs the main job; `make test` sets up and runs the test suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_VERSION := 2.13.0
FASHION_DIR := /usr/share/datasets/fashion-mnist

.PHONY: setup demo test bench data browser clean

setup: $(VENV)/.installed data

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# The CPU wheel first: anything that asks for a newer torch would pull several GB of CUDA packages.
	$(BIN)/python -m pip install --quiet torch==$(TORCH_VERSION)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	# ONNX models: onnx2torch without its dependencies, which name torchvision and so another torch (xaitrust imports
	# onnx2torch with a stand-in for the torchvision it only needs for NonMaxSuppression/RoiAlign).
	$(BIN)/python -m pip install --quiet 'onnx>=1.16' 'onnxscript>=0.2'
	$(BIN)/python -m pip install --quiet --no-deps 'onnx2torch>=1.5'
	touch $@

# The Ray executor's tests need Ray; the demo does not, so it is installed for the tests only.
$(VENV)/.ray: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[test,ray]'
	touch $@

# Fashion-MNIST comes from Debian; installed when missing and apt is usable, otherwise left to the user.
data:
	@if [ ! -f $(FASHION_DIR)/train-images-idx3-ubyte.gz ] && command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		(apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) || echo "could not install dataset-fashion-mnist; see README"; \
	fi

# The report test renders report.html in Debian's headless Chromium; installed when missing and apt is usable.
browser:
	@if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		(apt-get update -qq && apt-get install -y -qq chromium) || echo "could not install chromium; the report test is skipped"; \
	fi

demo: setup
	$(BIN)/xaitrust run benchmark --profile quick --out runs/benchmark-quick

test: setup browser $(VENV)/.ray
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python -m pip install --quiet 'quantus>=0.5'
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) src/*.egg-info .pytest_cache
