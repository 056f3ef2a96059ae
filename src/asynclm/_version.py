"""The package version (one source: the build reads it here)."""

__version__ = "0.1.0"
