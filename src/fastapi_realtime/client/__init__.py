"""The Centrifuge client protocol on top of a session: one handler per connection."""

from .handler import ClientHandler

__all__ = ["ClientHandler"]
