"""Durable state: resources with versions and full revision history (SQLite or PostgreSQL)."""

from graylane.resources.document import ResourceKey
from graylane.store.store import Action, ApplyResult, Revision, Store, StoredResource

__all__ = ["Action", "ApplyResult", "ResourceKey", "Revision", "Store", "StoredResource"]
