"""Benchmarks against the peers: python -m bench (see bench/README.md)."""
