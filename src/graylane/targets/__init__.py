"""Targets: where resources become real (the local mesh, or a Kubernetes cluster)."""
