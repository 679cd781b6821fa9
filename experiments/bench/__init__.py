"""Benchmarks and profiles: scripts that measure speed and memory, not tools a run needs."""
