"""procpool's benchmarks: the peers harness (``python -m benchmarks.run``) and standalone scripts."""
