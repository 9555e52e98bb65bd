"""Logging setup: loguru, one line per event, component fields, ``json`` for log shippers."""

from __future__ import annotations

import sys

from loguru import logger

from tickerd.config import LogSettings

_TEXT = "<green>{time:YYYY-MM-DD HH:mm:ss.SSS}</green> <level>{level: <7}</level> {extra[component]}{message}"


def _component(record: dict) -> None:  # type: ignore[type-arg]
    """Render the bound fields (exchange, feed, symbol) as a ``[k=v …] `` prefix."""
    fields = {k: v for k, v in record["extra"].items() if k != "component"}
    record["extra"]["component"] = (
        "[" + " ".join(f"{k}={v}" for k, v in fields.items()) + "] " if fields else ""
    )


def configure(settings: LogSettings) -> None:
    """Replace loguru's default sink with one that follows ``settings``."""
    logger.remove()
    if settings.format == "json":
        logger.add(sys.stderr, level=settings.level, serialize=True)
    else:
        logger.configure(patcher=_component)  # type: ignore[arg-type]
        logger.add(sys.stderr, level=settings.level, format=_TEXT, colorize=sys.stderr.isatty())
