# Quick start: `make demo` (MVD, VKD and KD-REID on synthetic data, both backends) and `make test`.
PY ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
DEMO_DIR ?= demo_data

.PHONY: install test test-all parity demo bench clean

install: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(VPY) || $(PY) -m venv $(VENV)
	$(VPY) -m pip install -q -r requirements.txt
	$(VPY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

test: $(STAMP)
	$(VPY) -m pytest -q $(PYTEST_ARGS)

test-all: $(STAMP)
	$(VPY) -m pytest -q -m "" $(PYTEST_ARGS)

parity: $(STAMP)
	$(VPY) -m pytest -q -m "" tests/parity $(PYTEST_ARGS)

demo: $(STAMP)
	$(VPY) -m tools.demo --out $(DEMO_DIR)

bench: $(STAMP)
	$(VPY) benchmarks/eval_speed.py
	$(VPY) benchmarks/train_step.py --method mvd
	$(VPY) benchmarks/train_step.py --method vkd-student --threads 1 --batch-ids 2 --pos 2
	$(VPY) benchmarks/train_step.py --method kd-reid --threads 1 --batch-ids 4 --pos 4 --height 128 --width-px 64
	$(VPY) benchmarks/data_speed.py
	$(VPY) benchmarks/export_speed.py
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(VPY) benchmarks/scaling.py

clean:
	rm -rf $(DEMO_DIR) logs .pytest_cache
