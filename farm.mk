# Render-farm jobs (hdrlift-farm, docs/farm.md). The Makefile includes this file:
#     include farm.mk
# `make test` already runs tests/farm (it is under tests/); these targets run it alone, and show
# the OpenJD bundle on the demo clip.
#   make test-farm   tests/farm: bundles run by `openjd run`, compared byte for byte; OpenCue spec
#   make farm-demo   write the job bundle for the demo clip and run it with openjd run
.PHONY: test-farm farm-demo

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
