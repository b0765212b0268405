"""Fault tests drive the app as a server would: requests interleave in one event loop
(the `api` fixture of the concurrency tests), so a request that holds the loop shows
up as latency on every other request."""

from tests.concurrency.conftest import api

__all__ = ["api"]
