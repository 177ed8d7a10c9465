"""Bookinfo's four services in Python, wire-compatible with Istio's originals (`python -m ...services.<name>`)."""
