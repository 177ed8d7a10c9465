"""Graylane: canary releases with Spinnaker-style pipelines over an Istio-semantics mesh."""

__version__ = "0.1.0"
