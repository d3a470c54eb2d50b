# Two commands do all the set-up on a fresh clone; each creates the virtual environment it needs.
#   make demo   train and evaluate the offline demo (shapes set, tiny decoder): a few minutes on a laptop CPU
#   make test   run the test suite (parity with transformers' Qwen3, data, vision, training, ...), two workers
#   make test-fast   the tests that take seconds (no training runs, notebooks or browsers), for the edit-run loop
#   make rehearse    the real run at its real size, offline: Qwen3-0.6B-Base's layout, ViT-B/16, CLIP, torchrun, --test,
#                    caption.py, the push, the teacher, COCO and a Parquet repo, on random weights (about 8 min, 16 GB)

VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python

.PHONY: demo test test-fast rehearse lint clean-venv

# OpenMP threads that wait by spinning make small CPU models 10-20x slower as soon as anything else runs on the
# machine (a browser, a second job); PASSIVE lets them sleep. Set it yourself when calling python directly.

# `pip install -e '.[dev]'` installs the dependencies only: the project itself runs from this checkout (README).
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

demo: $(VENV)/.installed
	OMP_WAIT_POLICY=PASSIVE $(PY) train.py --demo

# Two pytest-xdist workers; --dist loadfile keeps each file's tests on one worker (they share module fixtures), and
# --no-loadscope-reorder hands the files out in the order tests/conftest.py's SCHEDULE gives them (longest first).
XDIST := -n 2 --dist loadfile --no-loadscope-reorder
test: $(VENV)/.installed
	OMP_WAIT_POLICY=PASSIVE $(PY) -m pytest $(XDIST)

test-fast: $(VENV)/.installed
	OMP_WAIT_POLICY=PASSIVE $(PY) -m pytest $(XDIST) -m "not slow"

# Not part of `make test`: it needs ../shared/qwen3-tokenizer, 8 GB of disk and 16 GB of memory (python -m rehearse).
rehearse: $(VENV)/.installed
	OMP_WAIT_POLICY=PASSIVE $(PY) -m rehearse

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

clean-venv:
	rm -rf $(VENV)
