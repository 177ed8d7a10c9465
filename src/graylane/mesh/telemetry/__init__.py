"""mesh/telemetry."""
