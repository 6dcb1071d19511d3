# hdrlift for Nuke (docs/nuke.md), included by the Makefile.
#   make nuke-dist   the NUKE_PATH folder for Nuke 14-16 (Python 3.9-3.11) on this platform, and its zip
#   make test-nuke   the Nuke suite (tests/nuke): the node against the stand-in nuke module and a real
#                    server, in NUKE_VENV on the folder's vendored packages; the TorchScript for the
#                    Inference node in $(VENV)
NUKE_PYTHON     ?= python3.11
NUKE_VENV       ?= nodes/nuke/.venv-nuke
NUKE_DIST       ?= nodes/nuke/dist
NUKE_TEST_DIST  ?= $(NUKE_DIST)/test
NUKE_SOURCES    := $(shell find nodes/nuke/plugin plugin -type f \( -name '*.py' -o -name '*.pyi' -o -name '*.gizmo' \
                     -o -name '*.png' -o -name '*.proto' \) -not -path '*/__pycache__/*') nodes/nuke/build.py

.PHONY: nuke-dist clean-nuke

# Nuke's Python has no torch and none of hdrlift's engine: this environment holds pytest and the
# types-nuke stubs only; numpy, grpcio and protobuf come from the built folder, as in Nuke.
$(NUKE_VENV)/.stamp: nodes/nuke/nuke.mk
	rm -rf $(NUKE_VENV)
	$(NUKE_PYTHON) -m venv $(NUKE_VENV)
	$(NUKE_VENV)/bin/python -m pip install -q --upgrade pip
	$(NUKE_VENV)/bin/python -m pip install -q pytest pytest-timeout types-nuke
	touch $@

# the folder for this machine's NUKE_PYTHON only: what the suite runs on
$(NUKE_TEST_DIST)/hdrlift-nuke/BUILD.json: $(NUKE_SOURCES) $(NUKE_VENV)/.stamp
	$(NUKE_VENV)/bin/python nodes/nuke/build.py --out $(NUKE_TEST_DIST) \
	  --python $$($(NUKE_VENV)/bin/python -c 'import sys; print("%d.%d" % sys.version_info[:2])')

nuke-dist: $(NUKE_VENV)/.stamp
	$(NUKE_VENV)/bin/python nodes/nuke/build.py --out $(NUKE_DIST) --zip

NUKE_TESTS = HDRLIFT_NUKE_DIST=$(abspath $(NUKE_TEST_DIST)/hdrlift-nuke) HDRLIFT_SERVER_PYTHON=$(abspath $(PY)) \
	  $(NUKE_VENV)/bin/python -m pytest -q -p no:cacheprovider tests/nuke && \
	$(PY) -m pytest -q -p no:cacheprovider -W ignore::DeprecationWarning tests/nuke/test_nuke_inference.py \
	  tests/engine/test_export.py -k "nuke or inference"

clean-nuke:
	rm -rf $(NUKE_VENV) $(NUKE_DIST)
