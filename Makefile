# The two commands of the README: `make demo` and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
# torch first, pinned: on the project's machines pip takes the local CPU wheel for
# this exact version. Elsewhere override, e.g. TORCH="torch==2.13.0 --index-url <your CPU wheel index>".
TORCH ?= torch==2.13.0

.PHONY: install demo lint test ui clean-cache device-wheels

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

# Generates the example cohort once (under $$CLIPS_HOME, default ~/.cache/clips) and
# trains the baseline in the demo profile (a few minutes on 2 CPU cores), tracked in ./mlflow.db.
demo: install
	PATH=$(BIN):$$PATH $(BIN)/mlflow run . --experiment-name clips -P curriculum=none -P profile=demo --env-manager local

# Lint (ruff: pyflakes, pycodestyle, import order, bugbear; pyproject.toml) before the suite.
lint: install
	$(BIN)/ruff check .

test: lint
	PATH=$(BIN):$$PATH $(BIN)/python -m pytest -q

# The MLflow UI on the local store, in its model-training view (MLflow 3 starts in its GenAI view).
ui: install
	@echo "open http://127.0.0.1:5000/#/experiments?workflowType=machine_learning"
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 --port 5000

# Wheels of what a lent GPU machine lacks (benchmarks/device_wheels.txt), for its Python 3.12, into ./wheels/:
# benchmarks/device_check.py's header has the device tool's run line that carries them.
device-wheels: install
	$(BIN)/python -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
	  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
	  --platform any -d wheels -r benchmarks/device_wheels.txt
	@ls wheels | wc -l | xargs echo "wheels in ./wheels:"

clean-cache:
	rm -rf $${CLIPS_HOME:-$$HOME/.cache/clips}/cache
