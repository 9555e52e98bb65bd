"""The container's health check: ``python healthcheck.py URL`` exits 0 when ``URL`` (tickerd's
``/healthz``) answers 200, else 1 with the reason on standard error.

It uses nothing but the standard library, because the image has Python but no curl, and it
does not import tickerd, whose package import loads the daemon: a check that runs every 30 s
should cost a few milliseconds. Docker keeps what a check prints, so ``docker inspect`` shows
the reasons ``/healthz`` gives (``degraded: kraken: reconnecting``), not only that it failed.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request

#: Below the image's HEALTHCHECK --timeout, so a hung daemon is reported by this script.
TIMEOUT = 4.0


def check(url: str) -> str | None:
    """``None`` when ``url`` answers 200, else why not."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
            response.read()
    except urllib.error.HTTPError as error:  # 503: the body says why
        return f"{error.code}: {error.read().decode(errors='replace').strip()}"
    except OSError as error:  # refused, timed out: the daemon is not serving
        return f"{url}: {error}"
    return None


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: healthcheck.py URL", file=sys.stderr)
        return 2
    problem = check(argv[0])
    if problem is None:
        return 0
    print(problem, file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
