# latentdex — set-up, test, demo and benchmark entry points.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
TORCH_PIN := torch==2.13.0
DATA := data
DEMO_OUT := demo-out
DEMO_HTTP_PORT ?= 8080

.PHONY: venv test lint format demo bench fuzz proto data default-model clean

venv: $(STAMP)

# torch goes in first, pinned, so that no later step resolves a (multi-GB CUDA) build of its own.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet $(TORCH_PIN)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: venv lint
	$(BIN)/python -m pytest -q

# The RPC fuzz test of `make test`, longer: FUZZ_EXAMPLES requests per RPC, another seed with FUZZ_SEED.
FUZZ_EXAMPLES ?= 2000
fuzz: venv
	LATENTDEX_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(if $(FUZZ_SEED),LATENTDEX_FUZZ_SEED=$(FUZZ_SEED)) \
		$(BIN)/python -m pytest -q tests/test_fuzz_rpc.py tests/test_http_gateway.py -k "fuzz or server_error"

proto: venv
	$(BIN)/python -m latentdex.service.protogen

demo: venv
	$(BIN)/latentdex demo --out $(DEMO_OUT) --serve --http-port $(DEMO_HTTP_PORT)

# Real image sets from Debian packages (see README: "Data"), unpacked under $(DATA)/.
data: venv
	$(BIN)/python -m bench.datasets fetch --root $(DATA)

bench: venv data
	$(BIN)/python -m bench --data $(DATA) --results bench/results

# Reproduces the shipped default checkpoint in models/default/ (see README: "Default model"): the model,
# then its decoder alone on decode(mu) (same encoder, so the same latents; sharper previews), later on the
# training crops with the training-only photos added, and last a low-rate MSE pass. The runs' checkpoints
# and optimiser state live outside the work tree (RUNS), so an interrupted run continues when this is run
# again on the same machine.
# Weights come out bit-identical for the same torch build and thread counts (as written). About
# 100 + 12 + 28 + 39 + 32 + 13 minutes on the 2-core CPU machine.
RUNS ?= $(HOME)/.cache/latentdex/runs
default-model: venv data
	$(BIN)/python -m bench.datasets training-crops --root $(DATA) --out $(DATA)/train-crops
	$(BIN)/latentdex train $(DATA)/train-crops --out $(RUNS)/default-v2 --image-size 64 --latent-dim 128 \
		--base-channels 32 --encoder-stem strided --decoder-upsampling nearest --epochs 8 --batch-size 64 \
		--seed 0 --invariance-weight 100 --invariance-form head_ntxent --invariance-temperature 0.2 --threads 1
	$(BIN)/latentdex train $(DATA)/train-crops --out $(RUNS)/default-v2-decoder --init-from $(RUNS)/default-v2 \
		--decoder-only --epochs 2 --batch-size 64 --seed 0 --learning-rate 5e-4 --checkpoint-every 250 --threads 2
	$(BIN)/latentdex train $(DATA)/train-crops --out $(RUNS)/default-v2-gan --init-from $(RUNS)/default-v2-decoder \
		--decoder-only --epochs 4 --batch-size 64 --seed 0 --learning-rate 5e-4 --checkpoint-every 250 --threads 2 \
		--adversarial-weight 2.0 --adversarial-warmup 100
	$(BIN)/python -m bench.datasets training-crops --root $(DATA) --out $(DATA)/train-crops-more --more-photos
	$(BIN)/latentdex train $(DATA)/train-crops-more --out $(RUNS)/default-v2-more-photos \
		--init-from $(RUNS)/default-v2-gan --decoder-only --epochs 4 --batch-size 64 --seed 0 \
		--learning-rate 5e-4 --checkpoint-every 250 --threads 2 --adversarial-weight 2.0 --adversarial-warmup 100
	$(BIN)/latentdex train $(DATA)/train-crops-more --out $(RUNS)/default-v2-more-photos-2 \
		--init-from $(RUNS)/default-v2-more-photos --decoder-only --epochs 4 --batch-size 64 --seed 0 \
		--learning-rate 5e-4 --checkpoint-every 250 --threads 2 --adversarial-weight 2.0 --adversarial-warmup 100
	$(BIN)/latentdex train $(DATA)/train-crops-more --out $(RUNS)/default-v2-polish \
		--init-from $(RUNS)/default-v2-more-photos-2 --decoder-only --epochs 1 --batch-size 64 --seed 0 \
		--learning-rate 1e-4 --checkpoint-every 250 --threads 1
	$(BIN)/latentdex train $(DATA)/train-crops-more --out $(RUNS)/default-v2-corners \
		--init-from $(RUNS)/default-v2-polish --encoder-only --head-from $(RUNS)/default-v2 --epochs 2 \
		--batch-size 64 --seed 0 --learning-rate 2e-4 --invariance-weight 100 --invariance-form head_ntxent \
		--invariance-temperature 0.2 --black-corner-share 0.5 --checkpoint-every 250 --threads 1
	mkdir -p models/default
	cp $(RUNS)/default-v2-corners/config.json $(RUNS)/default-v2-corners/model.safetensors models/default/

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache .ruff_cache
