# HybridNet-Caffe. `make help` lists the targets.
SHELL := /bin/bash
PY := .venv/bin/python
PYTEST_ARGS ?=

.PHONY: help setup test

help:  ## list the targets
	@grep -hE '^[a-zA-Z0-9_%-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 24

setup:  ## apt + pip packages, Caffe from PyPI's sdist (cached), .venv/ (CAFFE_GPU=1 CUDA_ARCH="90" for CUDA)
	@bash scripts/setup.sh

test:  ## run the whole test suite (needs `make setup`)
	@test -x $(PY) || { echo "no .venv: run 'make setup' first" >&2; exit 1; }
	$(PY) -m pytest $(PYTEST_ARGS)

.PHONY: prototxt
prototxt:  ## regenerate prototxt/, solvers/, docs/nets/ from netgen/ (check: python -m netgen --check)
	@test -x $(PY) || { echo "no .venv: run 'make setup' first" >&2; exit 1; }
	$(PY) -m netgen

.PHONY: gpu-bundle
gpu-bundle:  ## archive of the CUDA build for a GPU machine without Caffe (runs/gpu-bundle/; for bench/device_check.sh)
	@bash bench/gpu_bundle.sh
