"""Benchmarks: `make bench` (or `python -m benchmarks.run`) regenerates BENCHMARKS.md."""
