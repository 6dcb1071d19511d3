# hdrlift: the two commands of the README.
#   make demo   fresh virtual environment, then the main job on the project's own sample clip
#   make test   fresh virtual environment with the dev extras, then the test suite
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
# The CPU build of torch lies on local disk; an unpinned torch would pull a multi-GB CUDA build.
TORCH  ?= torch==2.13.0

.PHONY: demo test venv dev bench clean

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

test: dev
	$(PY) -m pytest -q

bench: dev
	$(PY) bench/bench_hdr_video.py

clean:
	rm -rf $(VENV) demo_out build *.egg-info
