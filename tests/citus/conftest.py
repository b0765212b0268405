"""`api`: the app served inside the test's event loop, so that gathered requests
really run at the same time (tests/concurrency/conftest.py says why)."""

from tests.concurrency.conftest import api

__all__ = ["api"]
