"""The Redis writer, in three parts with one job each.

* :mod:`tickerd.writer.loop`: :class:`RedisWriter`, the task that coalesces tickers and
  decides when a batch goes out (and retries it while Redis is away);
* :mod:`tickerd.writer.connection`: the connection to Redis (RESP over a trio stream, with
  redis-py's parser and error classes);
* :mod:`tickerd.layout`: what the commands are (key names, the record encoding).
"""

from tickerd.writer.loop import RedisWriter, Written

__all__ = ["RedisWriter", "Written"]
