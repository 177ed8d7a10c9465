"""Telemetry over the data plane: Istio metrics in time, the topology graph, traces, /metrics."""
