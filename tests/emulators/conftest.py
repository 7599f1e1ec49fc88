"""Fixtures for the emulator tests (defined in helpers.py, shared with the test modules)."""

from tests.emulators.helpers import clock, plant  # noqa: F401 - pytest fixtures
