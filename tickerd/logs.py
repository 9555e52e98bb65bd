"""Logging setup: loguru, one line per event, component fields, ``json`` for log shippers."""

from __future__ import annotations

import sys
from pathlib import Path

from loguru import logger

from tickerd.config import LogSettings

_TEXT = "<green>{time:YYYY-MM-DD HH:mm:ss.SSS}</green> <level>{level: <7}</level> {extra[component]}{message}"


#: The fields that say which part of tickerd a line is about (``feed`` is one connection).
#: Loguru also puts a message's format arguments in ``extra``; those are already in the text.
COMPONENT_FIELDS = ("exchange", "feed", "symbol")


def _component(record: dict) -> None:  # type: ignore[type-arg]
    """Render the component fields (exchange, feed, symbol) as a ``[k=v …] `` prefix."""
    extra = record["extra"]
    fields = {k: extra[k] for k in COMPONENT_FIELDS if k in extra}
    record["extra"]["component"] = (
        "[" + " ".join(f"{k}={v}" for k, v in fields.items()) + "] " if fields else ""
    )


def configure(settings: LogSettings, file: Path | None = None) -> None:
    """Replace loguru's default sink with one that follows ``settings``: standard error, or
    ``file`` (where a live view owns the terminal)."""
    logger.remove()
    if settings.format == "json":
        logger.add(file or sys.stderr, level=settings.level, serialize=True)
    else:
        logger.configure(patcher=_component)  # type: ignore[arg-type]
        colorize = file is None and sys.stderr.isatty()
        logger.add(file or sys.stderr, level=settings.level, format=_TEXT, colorize=colorize)
