"""Switchboard: a terminal operations console for voice-AI operations."""

__version__ = "0.1.0"
