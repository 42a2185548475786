"""The study store: frames byte-identical in an append-only archive, indexed by SQLite."""
