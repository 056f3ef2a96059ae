"""asynclm: asynchronous LLM function calling."""

__version__ = "0.1.0"
