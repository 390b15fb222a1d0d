"""What operators see: structured logs, Prometheus metrics and the events that feed both."""
