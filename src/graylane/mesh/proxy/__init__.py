"""The data plane: an Istio-semantics HTTP/1.1 proxy on uvloop + httptools (see docs/dataplane.md)."""
