"""Incremental extraction of a slice from a monolith: routing, comparison and reconciliation helpers."""
