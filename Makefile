# The README's two commands: `make demo` (the whole pipeline on the embedded default) and `make test`.
# Both create .venv at the repo root when missing and install into it. torch is installed first and
# pinned: a plain resolve of `torch` would pull a multi-GB CUDA build; 2.13.0 is a local CPU wheel.

SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
C2I := $(VENV)/bin/c2i
STAMP := $(VENV)/.installed
TORCH_PIN ?= torch==2.13.0
ART ?= artifacts
DATA := $(ART)/data
CUSTOMERS ?= 4000
SEED ?= 7
MSNBC ?= $(firstword $(wildcard ../shared/data/real/msnbc/*.seq))

.PHONY: install demo test lint clean

$(PY):
	python3 -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install "$(TORCH_PIN)"
	$(PY) -m pip install -e ".[llm,dev]"
	touch $(STAMP)

install: $(STAMP)

lint: install
	$(VENV)/bin/ruff check .

test: install lint
	@set +e; $(VENV)/bin/pytest; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 1; fi; exit $$rc

demo: install
	@echo "== simulate: $(CUSTOMERS) customers, seed $(SEED)"
	$(C2I) simulate --out $(DATA) --customers $(CUSTOMERS) --seed $(SEED)
	@echo "== validate the simulated clickstream against the contract"
	$(C2I) validate $(DATA)/events.parquet
	@echo "== ingest the real MSNBC clickstream"
	$(C2I) ingest msnbc "$(MSNBC)" --out $(DATA)/msnbc_events.parquet
	$(C2I) summary $(ART)

clean:
	rm -rf $(ART)
