# hdrlift: the two commands of the README.
#   make demo   fresh virtual environment, then the main job on the project's own sample clip
#   make test   fresh virtual environment with the dev extras, then the test suite
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
# The CPU build of torch lies on local disk; an unpinned torch would pull a multi-GB CUDA build.
TORCH  ?= torch==2.13.0

.PHONY: demo test test-main test-leaf test-blender test-ofx test-nuke test-farm farm-demo ofx venv dev bench eval eval-cvvdp clean

$(VENV)/.stamp-base: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.stamp-dev: $(VENV)/.stamp-base
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

venv: $(VENV)/.stamp-base
dev: $(VENV)/.stamp-dev

demo: venv
	$(VENV)/bin/hdrlift-make-sample demo_out/sample.mp4
	$(VENV)/bin/hdr-video demo_out/sample.mp4 demo_out/exr --overwrite --preview demo_out/preview.png
	@echo "EXRs in demo_out/exr/, side-by-side preview (input | reconstruction 3 stops darker) in demo_out/preview.png"

# Every suite runs, whatever failed before it; the summary names the failed ones (exit 1).
SUITES ?= test-main test-leaf test-blender test-ofx test-nuke
test:
	@failed=""; for s in $(SUITES); do $(MAKE) --no-print-directory $$s || failed="$$failed $$s"; done; \
	if [ -n "$$failed" ]; then echo "make test: FAILED:$$failed"; exit 1; fi; echo "make test: every suite passed ($(SUITES))"

test-main: dev
	$(PY) -m pytest -q

# hdrlift.plugin alone, as hosts vendor it: a fresh environment with grpcio, protobuf and numpy
# only (pytest to run the test), hdrlift installed without its dependencies. The server it talks
# to runs from $(VENV).
LEAF_VENV ?= .venv-leaf
$(LEAF_VENV)/.stamp: pyproject.toml
	rm -rf $(LEAF_VENV)
	$(PYTHON) -m venv $(LEAF_VENV)
	$(LEAF_VENV)/bin/python -m pip install -q --upgrade pip
	$(LEAF_VENV)/bin/python -m pip install -q grpcio protobuf numpy pytest pytest-timeout
	$(LEAF_VENV)/bin/python -m pip install -q --no-deps -e .
	touch $@

test-leaf: dev $(LEAF_VENV)/.stamp
	HDRLIFT_LEAF=1 HDRLIFT_SERVER_PYTHON=$(abspath $(PY)) $(LEAF_VENV)/bin/python -m pytest -q -p no:cacheprovider tests/leaf

# The Blender extension's tests run in the real bpy module, which pins numpy < 2: its own venv
# (Python 3.11, as Blender 4.2-5.0 embed). The hdrlift server they talk to runs from $(VENV).
BLENDER_PYTHON ?= python3.11
BLENDER_VENV   ?= .venv-blender
BPY            ?= bpy==4.5.15
$(BLENDER_VENV)/.stamp: pyproject.toml
	$(BLENDER_PYTHON) -m venv $(BLENDER_VENV)
	$(BLENDER_VENV)/bin/python -m pip install -q --upgrade pip
	$(BLENDER_VENV)/bin/python -m pip install -q "$(BPY)" pytest pytest-timeout grpcio protobuf
	$(BLENDER_VENV)/bin/python -m pip install -q --no-deps -e .
	touch $@

test-blender: dev $(BLENDER_VENV)/.stamp
	HDRLIFT_SERVER_PYTHON=$(abspath $(PY)) $(BLENDER_VENV)/bin/python -m pytest -q -p no:cacheprovider tests/nodes

# Render-farm jobs (hdrlift-farm, docs/farm.md). test-main runs tests/farm with the rest; this
# target runs it alone. farm-demo writes the OpenJD bundle for the demo clip and runs it.
test-farm: dev
	$(PY) -m pytest -q tests/farm

FARM_DEMO ?= demo_out/farm
farm-demo: dev
	rm -rf $(FARM_DEMO)
	$(VENV)/bin/hdrlift-make-sample demo_out/sample.mp4
	$(VENV)/bin/hdrlift-farm openjd demo_out/sample.mp4 $(FARM_DEMO)/exr/sample.####.exr --chunk 12 \
	    --model inverse-crf --bundle $(FARM_DEMO)/bundle --hdrlift-farm $(abspath $(VENV))/bin/hdrlift-farm
	$(VENV)/bin/openjd run $(FARM_DEMO)/bundle/template.yaml -p file://$(abspath $(FARM_DEMO))/bundle/openjd-params.json
	@echo "EXRs in $(FARM_DEMO)/exr/; job bundle in $(FARM_DEMO)/bundle/ (deadline bundle submit $(FARM_DEMO)/bundle)"

# The OpenFX plug-in (rules in nodes/ofx/ofx.mk; Debian packages installed when missing, as root).
include nodes/ofx/ofx.mk
ofx: ofx-bundle

test-ofx: dev ofx-bundle
	$(MAKE) --no-print-directory ofx-test-run

# Nuke: the HdrLift node on the stand-in nuke module and its vendored client, the Inference TorchScript
include nodes/nuke/nuke.mk
test-nuke: dev $(NUKE_VENV)/.stamp $(NUKE_TEST_DIST)/hdrlift-nuke/BUILD.json
	$(NUKE_TESTS)

bench: dev
	$(PY) bench/bench_hdr_video.py

# The val table of docs/models.md (CPU, about 2 min).
EVAL_MODELS ?= hdrcnn-lite,expandnet,hdrunet,inverse-crf,landis,akyuz,huo,kovaleski-oliveira
EVAL_ARGS    = --models $(EVAL_MODELS) --json docs/eval/val.json --markdown docs/eval/val.md
eval: venv
	$(VENV)/bin/hdrlift-eval $(EVAL_ARGS)

# The same table with ColorVideoVDP JOD. cvvdp imports torchvision, and PyPI's torchvision is built
# against CUDA torch: it does not load beside the CPU torch 2.13 of $(VENV). So JOD gets its own
# environment with the CUDA build of torch (about 6 GB; it runs on the CPU when no GPU is present).
CVVDP_VENV  ?= .venv-cvvdp
CVVDP_TORCH ?= torch==2.14.1 torchvision==0.29.1
$(CVVDP_VENV)/.stamp: pyproject.toml
	$(PYTHON) -m venv $(CVVDP_VENV)
	$(CVVDP_VENV)/bin/python -m pip install -q --upgrade pip
	$(CVVDP_VENV)/bin/python -m pip install -q $(CVVDP_TORCH) cvvdp
	$(CVVDP_VENV)/bin/python -m pip install -q -e .
	touch $@

eval-cvvdp: $(CVVDP_VENV)/.stamp
	$(CVVDP_VENV)/bin/hdrlift-eval $(EVAL_ARGS) --cvvdp

clean:
	rm -rf $(VENV) $(CVVDP_VENV) $(BLENDER_VENV) $(LEAF_VENV) $(NUKE_VENV) nodes/blender/dist nodes/ofx/build nodes/nuke/dist demo_out build *.egg-info
