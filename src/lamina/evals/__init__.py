"""Evaluation: retrieval metrics and benchmarks. Beside the stack: nothing in it imports this."""
