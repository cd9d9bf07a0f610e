# Two commands do all set-up on a fresh machine with Python 3.11+, make and git:
#   make report   create .venv if missing, install, register the kernel, regenerate reports/
#   make test     create .venv if missing, install, run ruff, pytest (tests/) and nbval (notebooks/)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
KERNEL := backpain
DATA   ?= data/synthetic
OUT    ?= reports
JOBS   ?= $(shell nproc 2>/dev/null || echo 2)
PYTEST_ARGS ?=
# JupyterLab refuses to run as root unless told (containers often run as root)
LAB_ARGS ?= $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: help venv report test lint validate lab bench docs wheel clean

help:
	@echo "make report    regenerate the full report on $(DATA) into $(OUT)/"
	@echo "make test      ruff + pytest + nbval (creates $(VENV) if missing)"
	@echo "make validate  the long simulation checks (method validation)"
	@echo "make lab       JupyterLab on notebooks/ with the $(KERNEL) kernel"
	@echo "make bench     speed and memory benchmarks (benchmarks/)"
	@echo "make docs      regenerate docs/data_dictionary.md"
	@echo "make wheel     build the wheel into dist/ (pip install dist/*.whl)"
	@echo "After make, activate the environment to use the commands: source $(VENV)/bin/activate"
	@echo "make clean     remove $(VENV), $(OUT)/ and caches"

# The environment is (re)built when pyproject.toml changes.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	$(BIN)/python -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python (backpain)"
	@touch $(STAMP)

venv: $(STAMP)

report: $(STAMP)
	$(BIN)/backpain report --data $(DATA) --out $(OUT) --jobs $(JOBS)

lint: $(STAMP)
	$(BIN)/ruff check backpain_analysis tests benchmarks notebooks

test: $(STAMP) lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

validate: $(STAMP)
	BACKPAIN_SIM_REPLICATES=$${BACKPAIN_SIM_REPLICATES:-500} $(BIN)/python -m pytest -m slow tests $(PYTEST_ARGS)

lab: $(STAMP)
	$(BIN)/jupyter lab --notebook-dir=notebooks --MappingKernelManager.default_kernel_name=$(KERNEL) $(LAB_ARGS)

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

docs: $(STAMP)
	$(BIN)/backpain dictionary --markdown --out docs/data_dictionary.md

wheel: $(STAMP)
	$(BIN)/python -m pip wheel --no-deps -w dist .

clean:
	rm -rf $(VENV) $(OUT) build dist .pytest_cache .ruff_cache .hypothesis benchmarks/results
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
