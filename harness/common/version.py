"""The harness's version, in one place: run.json, the result cache's key and --version read it."""

__version__ = "0.1.0"
