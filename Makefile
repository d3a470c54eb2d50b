# Two commands do all the set-up on a fresh clone; each creates the virtual environment it needs.
#   make demo   train and evaluate the offline demo (shapes set, tiny decoder): a few minutes on a laptop CPU
#   make test   run the test suite (parity with transformers' Qwen3, data, vision, training, ...)

VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python

.PHONY: demo test lint clean-venv

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

demo: $(VENV)/.installed
	$(PY) train.py --demo

test: $(VENV)/.installed
	$(PY) -m pytest

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

clean-venv:
	rm -rf $(VENV)
