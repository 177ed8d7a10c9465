"""Resources: the Kubernetes/Istio documents Graylane reads, validates and stores."""

from graylane.resources.document import Document, ResourceKey, Source

__all__ = ["Document", "ResourceKey", "Source"]
