# trainyard — `make help` lists every target. Local targets need only Python 3.11;
# docker-* targets need a Docker engine (and the NVIDIA Container Toolkit for GPU services).

SHELL := /bin/bash
.DEFAULT_GOAL := help
.SUFFIXES:

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
NOX := $(BIN)/nox
# The package list is derived from packages/*/pyproject.toml by ci/packages.py (stdlib only, so
# the system python3 runs it before .venv exists); an error there stops make, naming the file.
packages = $(shell $(PYTHON) ci/packages.py $(1) || echo __failed__)
PACKAGES := $(call packages,images)
INSTALL_ARGS := $(call packages,install-args)
ifneq ($(filter __failed__,$(PACKAGES) $(INSTALL_ARGS)),)
$(error ci/packages.py could not read the package list (its error is above))
endif
TRAIN_CONFIG ?= configs/train/driving.yaml
RUNS_DIR ?= runs
ARGS ?=

# Settings: the command line wins, then the environment, then .env (ENV_FILE), then the
# defaults below, the same order docker compose uses, so `make` and compose agree on every value.
ENV_FILE ?= .env
# The value of $(1) in $(ENV_FILE): its last `KEY=VALUE` (or `export KEY=VALUE`) line, one pair of
# surrounding quotes removed; empty when the file or the key is absent.
dotenv = $(shell sed -n -e 's/^[[:space:]]*\(export[[:space:]][[:space:]]*\)\{0,1\}$(1)=//p' \
	$(ENV_FILE) 2>/dev/null | tail -n 1 | sed -e 's/^"\(.*\)"$$/\1/' -e "s/^'\(.*\)'$$/\1/")
# $(call setting,NAME,DEFAULT) defines NAME from .env or DEFAULT unless the command line or the
# environment already did.
define setting
ifeq ($$(origin $(1)),undefined)
$(1) := $$(or $$(call dotenv,$(1)),$(2))
endif
endef
$(eval $(call setting,IMAGE_PREFIX,trainyard))
$(eval $(call setting,TAG,latest))
$(eval $(call setting,USER_UID,$$(shell id -u)))
$(eval $(call setting,USER_GID,$$(shell id -g)))
$(eval $(call setting,ENV_PORT,36001))
$(eval $(call setting,MAX_ROUND,10))
$(eval $(call setting,DOCKER_CA,))
export IMAGE_PREFIX TAG USER_UID USER_GID ENV_PORT MAX_ROUND

# ENV picks the environment family the env server runs (make docker-env ENV=textcraft; seed 003's
# default, searchqa). The command line must name a family; a value in the environment that is not
# one (sh reads its startup file from $ENV) is passed over for .env's, and .env's must be a family.
ENV_FAMILIES := babyai textcraft sciworld searchqa
ENV_DEFAULT := searchqa
not_family = $(error ENV=$(1) $(2) is not an environment family: use one of $(ENV_FAMILIES))
env_family = $(strip $(if $(filter command line,$(origin ENV)), \
	$(if $(filter $(ENV),$(ENV_FAMILIES)),$(ENV),$(call not_family,$(ENV),on the command line)), \
	$(if $(filter $(ENV),$(ENV_FAMILIES)),$(ENV), \
	$(if $(call dotenv,ENV), \
	$(if $(filter $(call dotenv,ENV),$(ENV_FAMILIES)),$(call dotenv,ENV),$(call not_family,$(call dotenv,ENV),in $(ENV_FILE))), \
	$(ENV_DEFAULT)))))

COMPOSE = docker compose -f compose/compose.yaml $(if $(wildcard $(ENV_FILE)),--env-file $(ENV_FILE))
DOCKER_BUILD = docker build $(if $(DOCKER_CA),--secret id=ca$(comma)src=$(DOCKER_CA))
comma := ,

# --- guards: evaluated when a recipe is expanded, i.e. before any of its commands run ------
# A missing variable stops make at once with exit status 2 and one line naming it.
require = $(if $(strip $($(1))),,$(error $(1) is required: $(2)))
# One line, exit status 2, when no Docker engine answers.
docker_engine = $(shell docker info >/dev/null 2>&1 && echo yes)
require_docker = $(if $(docker_engine),,$(error No Docker engine is running here (`docker info` failed): start Docker, or use the local targets (make train, make test)))
# JUPYTER_TOKEN from the environment, else from .env.
jupyter_token = $(or $(JUPYTER_TOKEN),$(call dotenv,JUPYTER_TOKEN))

##@ Local (no Docker)

.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} \
		/^##@/ {printf "\n\033[1m%s\033[0m\n", substr($$0, 5)} \
		/^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-26s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@printf "  \033[36m%-26s\033[0m %s\n" $(foreach p,$(PACKAGES),"docker-build-$(p)" "Build the $(p) image (builds the base first if missing)")
	@echo

$(VENV)/.tools-stamp: constraints.txt ci/bootstrap-requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --constraint constraints.txt -r ci/bootstrap-requirements.txt
	@touch $@

# --compile-bytecode: every later process (CLIs, test subprocesses) then starts without
# compiling torch's sources, even where bytecode cannot be cached (PYTHONDONTWRITEBYTECODE).
$(VENV)/.packages-stamp: $(VENV)/.tools-stamp ci/install.sh ci/packages.py ci/models-requirements.txt $(wildcard packages/*/pyproject.toml)
	UV=$(BIN)/uv VIRTUAL_ENV=$(abspath $(VENV)) bash ci/install.sh --with-models --compile-bytecode \
		$(foreach a,$(INSTALL_ARGS),'$(a)')
	@touch $@

.PHONY: setup
setup: $(VENV)/.packages-stamp ## Create .venv with uv, nox and every package (editable)

.PHONY: train
train: setup ## Main job: demos -> BC -> PPO -> closed-loop eval -> export of DrivingVLA (TRAIN_CONFIG=..., ARGS=...)
	$(BIN)/trainers-rl train --config $(TRAIN_CONFIG) --output-dir $(RUNS_DIR) $(ARGS)

.PHONY: test
test: $(VENV)/.tools-stamp ## Run every test with nox (ARGS are passed to pytest)
	$(NOX) -s tests $(if $(ARGS),-- $(ARGS))

.PHONY: lint
lint: $(VENV)/.tools-stamp ## ruff and yapf --diff
	$(NOX) -s lint

.PHONY: format
format: $(VENV)/.tools-stamp ## Format Python sources in place (yapf, ruff fixes)
	$(NOX) -s format

.PHONY: typecheck
typecheck: $(VENV)/.tools-stamp ## mypy over every package
	$(NOX) -s typecheck

.PHONY: docker-lint
docker-lint: $(VENV)/.tools-stamp ## hadolint, compose config, actionlint, check-jsonschema, shellcheck
	$(NOX) -s docker_lint

.PHONY: bench
bench: $(VENV)/.tools-stamp ## Run the benchmarks (each prints its anchor beside it)
	$(NOX) -s bench $(if $(ARGS),-- $(ARGS))

.PHONY: constraints
constraints: $(VENV)/.tools-stamp ## Re-pin constraints.txt from every pyproject.toml
	PATH=$(abspath $(BIN)):$$PATH bash ci/lock.sh

.PHONY: tensorboard
tensorboard: setup ## TensorBoard on the runs directory (http://localhost:6006)
	$(BIN)/tensorboard --logdir $(RUNS_DIR) --port 6006

.PHONY: clean
clean: ## Remove .venv, .nox and caches (keeps runs/)
	rm -rf $(VENV) .nox .pytest_cache .mypy_cache .ruff_cache
	find packages tests -name __pycache__ -type d -prune -exec rm -rf {} +

##@ Docker

.PHONY: docker-build
docker-build: ## Build the base image, then one image per package (ci/packages.py images) and the tools image
	$(require_docker)
	$(MAKE) docker-build-base
	$(MAKE) $(addprefix docker-build-,$(PACKAGES)) docker-build-tools

.PHONY: docker-build-base
docker-build-base: ## Build the CUDA + Python + torch base image
	$(require_docker)
	$(DOCKER_BUILD) -f docker/base.Dockerfile \
		--build-arg USER_UID=$(USER_UID) --build-arg USER_GID=$(USER_GID) \
		-t $(IMAGE_PREFIX)/base:$(TAG) .

.PHONY: $(addprefix docker-build-,$(PACKAGES) tools)
$(addprefix docker-build-,$(PACKAGES)): docker-build-%:
	$(require_docker)
	@docker image inspect $(IMAGE_PREFIX)/base:$(TAG) >/dev/null 2>&1 || $(MAKE) docker-build-base
	$(DOCKER_BUILD) -f "$$($(PYTHON) ci/packages.py dockerfile $*)" \
		--build-arg BASE_IMAGE=$(IMAGE_PREFIX)/base:$(TAG) --build-arg PACKAGE=$* \
		-t $(IMAGE_PREFIX)/$*:$(TAG) .

docker-build-tools: ## Build the tools image (JupyterLab, formatters) on the trainers-rl image
	$(require_docker)
	@docker image inspect $(IMAGE_PREFIX)/trainers-rl:$(TAG) >/dev/null 2>&1 || $(MAKE) docker-build-trainers-rl
	$(DOCKER_BUILD) -f docker/tools.Dockerfile \
		--build-arg BASE_IMAGE=$(IMAGE_PREFIX)/trainers-rl:$(TAG) -t $(IMAGE_PREFIX)/tools:$(TAG) .

# Seed 003's names for the images its targets build: the train image is trainers-rl's, the
# scripts image (merging, formatting) is model-merger's plus the tools image.
.PHONY: docker-build-train docker-build-scripts
docker-build-train: docker-build-trainers-rl ## Alias: build the training image (trainers-rl)
docker-build-scripts: docker-build-model-merger docker-build-tools ## Alias: build the merge and formatter images (model-merger, tools)

.PHONY: images-check
images-check: $(VENV)/.tools-stamp ## Build every image (docker, else buildah on a stand-in base) and check users, healthchecks, service commands
	$(NOX) -s images $(if $(ARGS),-- $(ARGS))

.PHONY: docker-train-shell
docker-train-shell: ## Interactive shell in the training container (GPU)
	$(require_docker)
	$(COMPOSE) --profile train run --rm train bash

.PHONY: docker-merge
docker-merge: ## Merge a verl FSDP / DCP checkpoint into HF safetensors: LOCAL_DIR=... [SAVE_DIR=models/merged] [HF_UPLOAD_PATH=user/model]
	$(call require,LOCAL_DIR,make docker-merge LOCAL_DIR=saves/global_step_100/actor [SAVE_DIR=models/merged] [HF_UPLOAD_PATH=user/model])
	$(require_docker)
	$(COMPOSE) --profile model-merger run --rm -e LOCAL_DIR="$(LOCAL_DIR)" \
		$(if $(SAVE_DIR),-e SAVE_DIR="$(SAVE_DIR)") \
		$(if $(HF_UPLOAD_PATH),-e HF_UPLOAD_PATH="$(HF_UPLOAD_PATH)") model-merger

.PHONY: docker-format
docker-format: ## Format the sources with yapf inside the tools image
	$(require_docker)
	$(COMPOSE) --profile formatter run --rm formatter

.PHONY: docker-env
docker-env: ## Start the env server for ENV (babyai, textcraft, sciworld, searchqa) on 127.0.0.1:ENV_PORT (36001)
	$(require_docker)
	ENV="$(env_family)" $(COMPOSE) --profile env up -d --wait env-server

.PHONY: docker-eval
docker-eval: ## Evaluate MODEL on ENV's server (starts it): ENV=babyai MODEL=... MAX_ROUND=10 [ARGS=...]
	$(require_docker)
	ENV="$(env_family)" EVAL_ARGS="$(ARGS)" $(COMPOSE) --profile eval run --rm eval-runner

.PHONY: docker-clean
docker-clean: ## Stop every service and remove trainyard's containers and images
	$(require_docker)
	$(COMPOSE) --profile '*' down --remove-orphans
	-docker image rm $(foreach i,base $(PACKAGES) tools,$(IMAGE_PREFIX)/$(i):$(TAG))

.PHONY: carla-up
carla-up: ## Start the CARLA 0.9.16 server (headless, GPU) and wait until it answers
	$(require_docker)
	$(COMPOSE) --profile simulation up -d --wait carla

.PHONY: carla-down
carla-down: ## Stop the CARLA server
	$(require_docker)
	$(COMPOSE) --profile simulation rm --stop --force carla

.PHONY: notebook
notebook: ## JupyterLab in the tools image (needs JUPYTER_TOKEN in .env or the environment)
	$(if $(jupyter_token),,$(error JUPYTER_TOKEN is required: set it in .env or the environment (no default token is allowed)))
	$(require_docker)
	JUPYTER_TOKEN="$(jupyter_token)" $(COMPOSE) --profile notebook up -d notebook
