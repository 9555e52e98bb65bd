"""tickerd's version, in a module of its own so that the daemon's parts can name it (in the
heartbeat) without importing the package that imports them."""

__version__ = "0.1.0"
