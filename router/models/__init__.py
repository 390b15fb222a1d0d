"""Pydantic models of the wire contract (seed spec) and of router's own records."""
