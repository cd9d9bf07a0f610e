"""Exceptions raised for bad input. The CLI prints them without a traceback."""

from __future__ import annotations

__all__ = ["BackpainError"]


class BackpainError(Exception):
    """Base class of every error this package raises for bad input or configuration.

    The ``backpain`` command catches it, prints the message and exits with status 2.
    """
