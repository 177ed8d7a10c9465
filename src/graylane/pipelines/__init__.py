"""The pipeline engine: Spinnaker pipelines imported, scheduled and run against a Target (docs/pipelines.md;
its modules are mapped in docs/architecture.md)."""
