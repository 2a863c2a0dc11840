# The two commands of the README: `make book` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(abspath $(VENV))/bin
STAMP  := $(VENV)/.installed
CHAPTERS := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))
# make test runs its checks in JOBS processes (pytest-xdist); each chapter keeps its own thread
# count, so the checked numbers do not depend on JOBS. The slowest chapters go first, so that
# no worker is left alone with one of them at the end.
JOBS ?= 2
SLOW_FIRST := $(addprefix notebooks/,07_mcts_reasoning.ipynb 10_iterative_fine_tuning.ipynb 09_rl_with_reward_models.ipynb \
	05_bt_vs_classifier.ipynb 08_alignment_from_demonstrations.ipynb 04_rejection_sampling.ipynb)
CHAPTER_ORDER := $(foreach nb,$(SLOW_FIRST),$(filter $(nb),$(CHAPTERS))) $(filter-out $(SLOW_FIRST),$(CHAPTERS))
# idle OpenMP threads sleep instead of spinning, so that parallel checks do not starve each other
PARALLEL := OMP_WAIT_POLICY=PASSIVE

export PATH := $(BIN):$(PATH)
export PYTHONHASHSEED := 0
export TOKENIZERS_PARALLELISM := false
export HF_HUB_OFFLINE := 1
# the same CPU kernels on every x86-64 machine (AVX2, not AVX-512), so checked numbers match
export ATEN_CPU_CAPABILITY := avx2
export MKL_CBWR := AVX2
export ONEDNN_MAX_CPU_ISA := AVX2

.PHONY: setup book test lint unit notebooks build browser bench gpu clean

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -r requirements.txt 2>&1 | grep -v "is ignored: it is neither" || true
	$(BIN)/python -c "import irlm, torch, transformers, papermill, nbval, jupyter_book"
	touch $(STAMP)

## make book: execute every chapter with its default parameters (JOBS at a time), then build the HTML book
book: $(STAMP)
	@printf '%s\n' $(CHAPTER_ORDER) | $(PARALLEL) xargs -P $(JOBS) -I{} sh -c \
		'echo "executing {}"; $(BIN)/papermill --cwd notebooks --no-progress-bar {} {} || exit 255'
	$(BIN)/jupyter-book build . -W --keep-going
	@echo "The book is ready: open file://$(abspath _build/html/index.html)"

## make test: lint, unit tests, papermill run, notebooks under nbval, the book build, and the book in a browser
test: lint unit notebooks build browser

lint: $(STAMP)
	$(BIN)/ruff check lib tests notebooks

unit: $(STAMP)
	$(PARALLEL) $(BIN)/python -m pytest -q -n $(JOBS) --dist worksteal tests

notebooks: $(STAMP)
	$(PARALLEL) $(BIN)/python -m pytest -q -n $(JOBS) --dist loadfile --no-loadscope-reorder \
		--nbval-lax --nbval-sanitize-with tests/sanitize.cfg --nbval-current-env $(CHAPTER_ORDER)

build: $(STAMP)
	$(BIN)/jupyter-book build . -W --keep-going

## make gpu: every chapter on the GPU (device=cuda) into _build/gpu, with its wall time (CI's GPU job)
gpu: $(STAMP)
	@mkdir -p _build/gpu
	@for nb in $(CHAPTERS); do \
		start=$$(date +%s); \
		$(BIN)/papermill --cwd notebooks --no-progress-bar -p device cuda $$nb _build/gpu/$$(basename $$nb) || exit 1; \
		echo "$$nb on cuda: $$(( $$(date +%s) - start )) s"; \
	done

## make browser: every page of the built book in headless Chromium, as a reader sees it (where node is present)
browser: build
	@if ! command -v node >/dev/null 2>&1; then \
		echo "browser check skipped: node is not installed (tests/browser/check_book.mjs needs Node.js 18+)"; \
	elif ! npm ci --prefix tests/browser --no-audit --no-fund --silent; then \
		echo "browser check skipped: npm could not install tests/browser's packages (no registry?)"; \
	else \
		node tests/browser/check_book.mjs _build/html; \
	fi

## make bench: training time and accuracy, every chapter's wall time, sampling throughput
bench: $(STAMP)
	$(BIN)/python tests/bench.py

clean:
	rm -rf _build
