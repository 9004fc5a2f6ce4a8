"""OpenAI-compatible HTTP server for a loaded backend (`minimind serve`); see docs/inference.md."""
from core.config.serve import ServerOptions
from core.serve.server import MiniMindServer, make_server

__all__ = ["MiniMindServer", "ServerOptions", "make_server"]
