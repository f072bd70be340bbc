"""A prompt-evaluation harness for causal language models, Korean ones first."""

__version__ = "0.1.0"
