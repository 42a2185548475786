"""The real-time runtime: sources in, inference, storage, results back (issue 5)."""
