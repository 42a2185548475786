"""Benchmarks: how fast each model, backend and precision runs. Speed lives here, never in tests."""
