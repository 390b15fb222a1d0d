"""The configuration store: one interface, a Redis backend and the embedded default."""
