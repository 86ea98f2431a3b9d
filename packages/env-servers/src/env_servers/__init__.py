"""HTTP environment servers for LLM agents (import name ``env_servers``)."""

__version__ = "0.1.0"
