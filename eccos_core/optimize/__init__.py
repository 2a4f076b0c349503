"""Constrained assignment of queries to models (stub: being written)."""
