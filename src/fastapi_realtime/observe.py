"""A hub's observer: the few events metrics need from the core, as cheap no-op calls.

``hub.observer`` is an :class:`Observer` whose methods do nothing; the standalone server
replaces it with one that counts (``fastapi_realtime.server.metrics``). Each method is called
on the event loop, must return at once and must not raise. Nothing here is called per
delivery: fan-out stays a loop of queue appends.
"""

from __future__ import annotations


class Observer:
    """Receives core events; every method is a no-op here."""

    def command(self, method: str, seconds: float, error: int) -> None:
        """A client command ran: its method (``"subscribe"``, ...), how long it took, and the
        error code it was answered with (0: none)."""
