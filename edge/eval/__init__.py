"""Datasets and metrics: how good a model is on labelled frames (host-side; also
``convert/``'s library)."""
