"""tickerd's command line: one module per command, and what they share.

Each module is one command (``run``, ``status``, ``watch``, ``demo``, ``db``/``symbols``) and
adds itself with ``register(commands)``; :mod:`tickerd.commands.main` builds the parser from
the module of the command being run only, so a command pays for no other command's imports.
The exit statuses, the ``--config`` option and loading the configuration live here so every
command treats them alike; this module stays light, since every command imports it.
"""

from __future__ import annotations

import argparse
import math
import sys

from tickerd import config as config_module
from tickerd.config import Config, ConfigError

EXIT_OK = 0
#: A second signal cut the shutdown short, or latest values were left unwritten.
EXIT_INTERRUPTED = EXIT_UNWRITTEN = 1
EXIT_CONFIG = 2

#: ``--metrics-port`` belongs to ``run``, and to ``tickerd`` itself since ``run`` is the default.
METRICS_HELP = (
    "serve the live status page at /, Prometheus /metrics and /healthz on this port (all interfaces)"
)


def port(text: str) -> int:
    """``--metrics-port``: a TCP port, 1-65535 (a bare ``int`` took 99999, which the socket
    layer wrapped to 34463)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number 1-65535, got {text!r}")
    return value


def seconds(text: str) -> float:
    """``--duration``: a finite number of seconds, 0 or more (``nan`` or ``-5`` ended in a
    traceback from the timer)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"expected a number of seconds (0 or more), got {text!r}")
    return value


def add_config_option(subparser: argparse.ArgumentParser) -> None:
    """Let ``--config`` follow the subcommand too (``tickerd run --config FILE``)."""
    subparser.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS, help="TOML configuration")


def load_or_report(args: argparse.Namespace) -> Config | None:
    """The configuration ``--config`` and the environment describe, or ``None`` after
    printing the one clear error message (callers exit with :data:`EXIT_CONFIG`)."""
    try:
        return config_module.load(args.config)
    except ConfigError as exc:
        print(f"tickerd: configuration error: {exc}", file=sys.stderr)
        return None


def first_leaf(error: BaseException) -> BaseException:
    """The first exception inside ``error``, out of the groups the nurseries it came through
    wrapped it in (what a command reports)."""
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error
