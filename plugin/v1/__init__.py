"""Generated gRPC stubs of the hdrlift.v1 contract (plugin/proto/generate.py)."""
