"""router: a self-hosted inbound call routing worker for voice AI."""

__version__ = "0.1.0"
