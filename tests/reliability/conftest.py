"""Reliability tests also run the real `trustreg serve` process."""

from tests.e2e.conftest import trustreg  # noqa: F401
