"""Durable state (placeholder until the Foundation store lands)."""
