"""Reproducible measurements, each printing JSON (`python -m console.bench`)."""
