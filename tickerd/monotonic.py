"""Writes that never go back in time: the compare-and-set of a fleet's ticker writes.

With several writers per key (replicas collecting the same symbol, an instance handing a
symbol over, one whose feed lags), a plain ``HSET`` lets whichever write arrives last win, and
that may be the older value.  So in fleet mode each exchange's tickers of a batch go to Redis
as ONE script call on the single key ``tickers:{exchange}`` (:data:`TICKERS`): for each symbol
it compares the *ordering key* stored inside the current JSON with the new one, and writes
(``HSET``) and publishes only a value that is newer; a rejected value is not published, and the
script answers how many it rejected.  One key per call keeps it on one Redis Cluster slot, and
the ordering key is read from the JSON itself, so the strict fullon layout (no extra fields,
no side keys in the slot) works too.  fullon's ``ticker_time`` keys live in other slots: each
has a script of its own (:data:`TICKER_TIME`), on the same rule (the fullon record has only a
time to compare).

The ordering key (:func:`newer` is the same rule in Python, for readers and tests):

* ``sequence``, the venue's own update id, when both values have one (only the extended
  layout stores it).  A venue whose non-book updates repeat the last id (Binance's ``@ticker``
  and ``@markPrice`` frames merged under the last ``@bookTicker`` ``u``) ties: the tie is
  broken on time.  Values whose times are more than :data:`SEQUENCE_RESET` seconds apart are
  ordered by time alone: a venue that restarted its numbering would otherwise freeze the
  symbol for good (and let a writer still holding the old numbers win).
* otherwise ``time``: the exchange's time, else the receive time.  Receive times come from the
  writers' own clocks, which must therefore be synchronised (NTP) where a venue sends no time.
* equal keys are broken on the receive time (``received_ts``) where both records have one
  (the extended layout): the later received wins.  A venue that sends a millisecond time, or
  none, gives two frames of one millisecond equal keys, and the second, written in a later
  batch, is the latest value, which tickerd's contract is to deliver.  A replica's copy (other
  clocks) can win a tie too, but a tie means its sequence and time equal the stored ones:
  it never replaces a value whose sequence or time is newer.  Which of two frames of one
  millisecond two instances received first is not known, so a replica's copy of the earlier
  may replace the later one until the next update; and a replica's copy of the stored update,
  received later, is written and published again: a duplicate publish is harmless, a lost
  latest value is not.  Fully equal keys (receive time too) are not newer.
* the strict fullon record has no receive time: a tie is written unless the value is the
  stored one byte for byte (a replica's copy of the same update, then, is not published a
  second time).  Its ``ticker_time`` key keeps an equal time as it is: it holds that text.

Times compare as the doubles both sides parse from the shortest round-tripping text (orjson's
and Python's ``repr``), so equal times compare equal.  Sequences compare as decimal text
(longer is larger, then character by character): exact beyond 2**53, where Lua's numbers are
not.  The stored JSON is not decoded in Lua: a plain ``string.find`` of ``"time"`` and of
``"sequence"`` (a key; inside a JSON string a quote is escaped, so no value matches) and an
anchored match of the number after each read the two fields, spaces of other writers allowed.
That costs ~1.4 µs per ticker of Redis's time where unanchored patterns cost ~4 µs (scanning the
~500-byte record from every position; 200 tickers per call, this machine).  Only a tie reads
the two records' ``"received_ts"`` the same way (the new value's from its JSON too, rather than
one more argument for every ticker): the common case pays nothing for it.
"""

from __future__ import annotations

import hashlib
from typing import Any

import attrs

#: Seconds apart beyond which two values are ordered by time alone, whatever their sequences.
SEQUENCE_RESET = 60.0


@attrs.frozen
class Script:
    """A Lua script and its SHA1, the name ``EVALSHA`` calls it by."""

    source: str
    sha: str = attrs.field(init=False)

    @sha.default
    def _sha(self) -> str:
        return hashlib.sha1(self.source.encode()).hexdigest()


#: ``KEYS[1]``: the hash ``tickers:{exchange}``; ``ARGV[1]``: the start of the exchange's channel
#: names; ``ARGV[2]``: :data:`SEQUENCE_RESET`; then per ticker four arguments: symbol, sequence
#: (``""`` for none), time, the JSON.  Answers ``{rejected}``: a one-element array, the only
#: array reply a batch of tickerd's holds (:func:`rejected` counts them by that).
TICKERS = Script(
    """
local find, match = string.find, string.match
local key, channel, reset = KEYS[1], ARGV[1], tonumber(ARGV[2])
local function number(record, name)
  local _, at = find(record, name, 1, true)
  return at and tonumber(match(record, '^%s*:%s*([-+.%deE]+)', at + 1))
end
local rejected = 0
for i = 3, #ARGV, 4 do
  local symbol, seq, time, value = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]), ARGV[i + 3]
  local newer = true
  local current = redis.call('HGET', key, symbol)
  if current then
    local old_time = number(current, '"time"')
    if old_time then
      local old_seq
      if seq ~= '' then
        local _, at = find(current, '"sequence"', 1, true)
        old_seq = at and match(current, '^%s*:%s*(%d+)', at + 1)
      end
      if not old_seq or seq == old_seq or math.abs(time - old_time) > reset then
        newer = time > old_time
        if time == old_time then
          local old_received = number(current, '"received_ts"')
          local received = old_received and number(value, '"received_ts"')
          if received then
            newer = received > old_received
          else
            newer = value ~= current
          end
        end
      elseif #seq ~= #old_seq then
        newer = #seq > #old_seq
      else
        newer = seq > old_seq
      end
    end
  end
  if newer then
    redis.call('HSET', key, symbol, value)
    redis.call('PUBLISH', channel .. symbol, value)
  else
    rejected = rejected + 1
  end
end
return {rejected}
""".strip()
)

#: ``KEYS[1]``: a ``ticker_time:{exchange}:{symbol}`` key; ``ARGV[1]``: the time, as text.  Sets
#: it unless it holds a time as new or newer.
TICKER_TIME = Script(
    """
local old = tonumber(redis.call('GET', KEYS[1]))
if old and old >= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
return 1
""".strip()
)

#: Every script of the monotonic write: loaded on each connection (and again after ``NOSCRIPT``).
SCRIPTS = (TICKERS, TICKER_TIME)


def rejected(replies: list[Any]) -> int:
    """How many values the :data:`TICKERS` calls among a batch's ``replies`` rejected."""
    return sum(reply[0] for reply in replies if type(reply) is list)


def newer(current: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether the stored record ``current`` gives way to ``new`` (the :data:`TICKERS` rule; a
    tie without receive times compares the decoded records where the script compares the text)."""
    time, old_time = new["time"], current["time"]
    sequence, old_sequence = new.get("sequence"), current.get("sequence")
    if (
        sequence is None
        or old_sequence is None
        or sequence == old_sequence
        or abs(time - old_time) > SEQUENCE_RESET
    ):
        if time != old_time:
            return bool(time > old_time)
        received, old_received = new.get("received_ts"), current.get("received_ts")
        if received is None or old_received is None:
            return new != current
        return bool(received > old_received)
    return bool(sequence > old_sequence)
