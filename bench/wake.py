"""What a wake-up costs on this machine, without tickerd: the same small piece of Python work,
run back to back and run after a pause of idleness.

    .venv/bin/python bench/wake.py [--work 2] [--chunks 400]

Each chunk parses ``--work`` small JSON frames and reads a float from each (a frame's decoding,
roughly).  The CPU time per chunk (``getrusage``, user + system) is printed for gaps of 0
(back to back) and 0.5 to 20 ms of sleep between chunks.  On the 2-core development VM a chunk
that costs ~6 µs back to back costs ~40 µs after 1 ms idle and ~100-130 µs after 5-20 ms: the
caches are cold and the CPU slower after idling, so a daemon at moderate rates pays per
wake-up far more than per frame (README, Benchmarks).
"""

from __future__ import annotations

import argparse
import json
import resource
import time

FRAME = '{"u":1,"s":"BTCUSDT","b":"1.0","B":"2.0","a":"3.0","A":"4.0"}'
GAPS = (0.0, 0.0005, 0.001, 0.005, 0.02)


def work(frames: int) -> float:
    total = 0.0
    for _ in range(frames):
        total += float(json.loads(FRAME)["b"])
    return total


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=int, default=2, help="frames parsed per chunk")
    parser.add_argument("--chunks", type=int, default=400, help="chunks per gap (x10 back to back)")
    args = parser.parse_args()
    for gap in GAPS:
        chunks = args.chunks if gap else 10 * args.chunks
        started = cpu()
        for _ in range(chunks):
            work(args.work)
            if gap:
                time.sleep(gap)
        print(
            f"gap {gap * 1000:5.1f} ms: {(cpu() - started) / chunks * 1e6:8.1f} µs of CPU per chunk",
            flush=True,
        )


if __name__ == "__main__":
    main()
