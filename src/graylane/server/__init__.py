"""The control plane's HTTP server: REST API under /api/v1, SSE events, the web console."""
