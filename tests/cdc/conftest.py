"""Fixtures for change-log tests (the store fixtures of tests/store)."""

from tests.store.conftest import shop

__all__ = ["shop"]
