"""Logging: loguru, one line per event, component fields, ``json`` for log shippers.

tickerd logs through :data:`logger`, loguru's logger with a patcher that puts the component
fields (``exchange``, ``feed``, ``symbol``) at the front of the message as ``[k=v …]``.  The
context is then part of the message itself, so it shows in every sink: this module's
:func:`configure` (the CLI), and equally an embedding program's own loguru sinks or loguru's
default one, which print no extra fields.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import loguru

from tickerd.config import LogSettings

if TYPE_CHECKING:
    from loguru import Record

_TEXT = "<green>{time:YYYY-MM-DD HH:mm:ss.SSS}</green> <level>{level: <7}</level> {message}"


#: The fields that say which part of tickerd a line is about (``feed`` is one connection).
#: Loguru also puts a message's format arguments in ``extra``; those are already in the text.
COMPONENT_FIELDS = ("exchange", "feed", "endpoint", "symbol")


def _with_component(record: Record) -> None:
    """Prefix the message with its component fields (from ``bind``, ``contextualize`` or the
    call's keyword arguments) as ``[exchange=kraken feed=1] ``."""
    extra = record["extra"]
    fields = " ".join(f"{k}={extra[k]}" for k in COMPONENT_FIELDS if k in extra)
    if fields:
        record["message"] = f"[{fields}] {record['message']}"


#: The logger of every tickerd module that logs component fields.  It shares loguru's sinks
#: and levels; only its records are patched, so an embedding program's own logging is not.
logger = loguru.logger.patch(_with_component)


def configure(settings: LogSettings, file: Path | None = None) -> None:
    """Replace loguru's default sink with one that follows ``settings``: standard error, or
    ``file`` (where a live view owns the terminal)."""
    logger.remove()
    if settings.format == "json":
        logger.add(file or sys.stderr, level=settings.level, serialize=True)
    else:
        colorize = file is None and sys.stderr.isatty()
        logger.add(file or sys.stderr, level=settings.level, format=_TEXT, colorize=colorize)
