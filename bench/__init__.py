"""Benchmarks: they print figures and write them to docs/benchmarks.md (never timed assertions)."""
