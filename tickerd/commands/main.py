"""Command line: ``tickerd [COMMAND] [--config FILE] …``; without a command it runs the daemon.

Each command lives in its own module, listed in :data:`COMMANDS` under the names it registers;
the module's ``register(commands)`` adds a subparser whose ``func(args) -> int`` runs it.
Only the module of the command being run is imported: ``tickerd status`` and ``tickerd watch``
start without loading the daemon, Prometheus or psycopg (which ``run``, ``demo`` and ``db``
import), and ``tickerd`` without a command loads only ``run``'s (not the demo's status page and
HTTP server, nor psycopg).  Help for every command and a mistyped command load them all.
"""

from __future__ import annotations

import argparse
import importlib
import platform
import sys
from collections.abc import Sequence
from importlib import metadata

from tickerd.commands import METRICS_HELP, port
from tickerd.version import __version__

#: The command modules by the names of the commands each one registers, in help order.
COMMANDS: dict[str, str] = {
    "run": "tickerd.commands.run",
    "status": "tickerd.commands.status",
    "watch": "tickerd.commands.watch",
    "demo": "tickerd.commands.demo",
    "fake": "tickerd.commands.fake",
    "db": "tickerd.commands.db",
    "symbols": "tickerd.commands.db",
    "config": "tickerd.commands.config",
}
#: What ``tickerd`` runs when no command is named.
DEFAULT_COMMAND = "run"


def _add_global_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="TOML configuration (default: a built-in set of liquid Kraken and Binance symbols)",
    )
    parser.add_argument("--metrics-port", type=port, metavar="PORT", help=METRICS_HELP)
    # Here, so that the probe in named_command answers it before any command module loads.
    parser.add_argument(
        "--version", action=_Version, help="show the versions of tickerd, Python and its engines"
    )


#: The libraries that do tickerd's work, by distribution name, as ``--version`` lists them.
ENGINES = {
    "websockets": "websockets",
    "trio-websocket": "trio-websocket",
    "trio": "trio",
    "redis-py": "redis",
}


def version_text() -> str:
    """tickerd's version, Python's and the engine libraries', read from the installed
    distributions' metadata: nothing is imported, so ``--version`` stays instant."""
    found = []
    for name, distribution in ENGINES.items():
        try:
            found.append(f"{name} {metadata.version(distribution)}")
        except metadata.PackageNotFoundError:
            found.append(f"{name} not installed")
    python = f"{platform.python_implementation()} {platform.python_version()}"
    return f"tickerd {__version__}\nPython {python}\n{', '.join(found)}"


class _Version(argparse.Action):
    """``--version``: computed only when asked for (argparse's own action takes a ready string)."""

    def __init__(self, option_strings: Sequence[str], dest: str, help: str | None = None) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        print(version_text())
        parser.exit()


def named_command(argv: Sequence[str]) -> str | None:
    """The command ``argv`` names (its first positional argument), found without importing any
    command module; ``None`` when it names none or cannot be read (the full parser says why)."""
    probe = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    _add_global_options(probe)
    probe.add_argument("command", nargs="?")
    try:
        known, _ = probe.parse_known_args(argv)
    except argparse.ArgumentError:
        return None
    command: str | None = known.command
    return command


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser for ``argv``: with only the named command's module loaded when it names one,
    or :data:`DEFAULT_COMMAND`'s when it names none and asks for no help (``None``: every
    command, as for ``tickerd --help``)."""
    parser = argparse.ArgumentParser(
        prog="tickerd",
        description="Keep the latest ticker of every configured (exchange, symbol) in Redis.",
    )
    _add_global_options(parser)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    command = None if argv is None else named_command(argv)
    if command is None and argv is not None and not {"-h", "--help"} & set(argv):
        command = DEFAULT_COMMAND  # the daemon runs: no other command's module is needed
    modules = [COMMANDS[command]] if command is not None and command in COMMANDS else list(COMMANDS.values())
    for module in dict.fromkeys(modules):
        importlib.import_module(module).register(commands)
    if DEFAULT_COMMAND in commands.choices:
        parser.set_defaults(func=commands.choices[DEFAULT_COMMAND].get_default("func"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
    result: int = args.func(args)
    return result
