# The OpenFX plug-in (nodes/ofx): build rules, included by the top-level Makefile.
#   make ofx        hdrlift.ofx.bundle in nodes/ofx/build (plus the test host and the ABI dump)
#   make test-ofx   the above, then tests/ofx against real hdrlift-serve processes
# The Debian packages the build needs are installed on the way when missing (apt-get: root,
# as CI runs; elsewhere run `sudo make ofx-debs` once).
OFX_SRC     := nodes/ofx
OFX_BUILD   ?= nodes/ofx/build
OFX_JOBS    ?= 2
OFX_CMAKE   ?= cmake
OFX_BUNDLE  := $(OFX_BUILD)/hdrlift.ofx.bundle
OFX_DEBS    := cmake make g++ pkg-config binutils patchelf openssl libgrpc++-dev libprotobuf-dev \
               protobuf-compiler protobuf-compiler-grpc
OFX_TOOLS   := cmake g++ make pkg-config nm readelf patchelf openssl protoc grpc_cpp_plugin

.PHONY: ofx-debs ofx-bundle ofx-test-run ofx-clean

# apt-get only when a tool or the gRPC/protobuf development files are missing
ofx-debs:
	@missing=""; for t in $(OFX_TOOLS); do command -v $$t >/dev/null 2>&1 || missing="$$missing $$t"; done; \
	pkg-config --exists grpc++ protobuf 2>/dev/null || missing="$$missing grpc++/protobuf-dev"; \
	if [ -n "$$missing" ]; then \
	  echo "ofx: missing$$missing: installing Debian packages $(OFX_DEBS)"; \
	  if [ "$$(id -u)" != 0 ]; then echo "ofx: apt-get needs root: run 'sudo make ofx-debs' once" >&2; exit 1; fi; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(OFX_DEBS); \
	fi

$(OFX_BUILD)/CMakeCache.txt: $(OFX_SRC)/CMakeLists.txt | ofx-debs
	nice -n 10 $(OFX_CMAKE) -S $(OFX_SRC) -B $(OFX_BUILD) -DCMAKE_BUILD_TYPE=Release

# CMake tracks the sources: building again when nothing changed takes a second
ofx-bundle: ofx-debs $(OFX_BUILD)/CMakeCache.txt
	nice -n 10 $(OFX_CMAKE) --build $(OFX_BUILD) -j$(OFX_JOBS)

# the tests, with the build they test (called by test-ofx once dev and the bundle are ready)
ofx-test-run:
	HDRLIFT_OFX_BUILD=$(abspath $(OFX_BUILD)) $(PY) -m pytest -q -p no:cacheprovider --timeout 900 tests/ofx

ofx-clean:
	rm -rf $(OFX_BUILD)
