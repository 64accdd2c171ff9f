"""The `make bench` harness: flowbase vs a direct call vs the LiteLLM proxy (entry point: bench/run.py)."""
