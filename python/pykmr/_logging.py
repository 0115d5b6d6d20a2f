"""Compile messages of libkmr through Python's `logging` (logger ``"pykmr"``).

libkmr calls :func:`emit` for each line it logs: one INFO line per compilation, with its time, and a
WARNING when a cache entry is unusable. When the ``pykmr`` logger is enabled for the level and some
handler listens (``logging.basicConfig(level=logging.INFO)``, pytest's ``caplog``...), the line goes
there only. Otherwise libkmr prints it on stderr as ``[pykmr] ...`` unless ``KMR_QUIET=1``: the default
output needs no logging configuration.
"""

from __future__ import annotations

import logging

logger = logging.getLogger("pykmr")


def emit(level: int, message: str) -> bool:
    """Logs ``message`` at ``level`` on the ``pykmr`` logger; True when a handler received it."""
    if not logger.isEnabledFor(level) or not logger.hasHandlers():
        return False
    logger.log(level, message)
    return True
