"""Runtimes: where connected calls run, how they are shared, and failover (SPEC §11)."""
