"""Trackers: latency, memory, fidelity, size, environment."""
