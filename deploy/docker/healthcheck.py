"""Container health probe, standard library only (the image has no curl).

    healthcheck.py                 GET http://127.0.0.1:$TRADEPULSE_HTTP_PORT/health/live
    healthcheck.py PORT [PATH]     GET http://127.0.0.1:PORT/PATH (default /health/live)
    healthcheck.py --process       PID 1 is alive and neither a zombie nor stopped

Exit status 0: healthy; 1: not. Every tradepulse role serves ``/health/live``: the worker
on ``TRADEPULSE_HTTP_PORT``, ``tradepulse persist`` on ``TRADEPULSE_PERSIST_HTTP_PORT``
(``healthcheck.py 9101``), the api on its ``--port``. ``--process`` is for a container
whose process serves no HTTP endpoint.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

TIMEOUT_S = 3.0


def http_ok(port: str, path: str) -> bool:
    """The endpoint answers 2xx within ``TIMEOUT_S``."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=TIMEOUT_S) as r:
            return 200 <= r.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def process_ok(pid: int = 1) -> bool:
    """``pid`` exists and its state (``/proc/PID/stat``, third field) is not Z, X, T or t."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X", "T", "t")


def main(argv: list[str]) -> int:
    if argv[:1] == ["--process"]:
        return 0 if process_ok() else 1
    port = argv[0] if argv else os.environ.get("TRADEPULSE_HTTP_PORT", "9100")
    path = argv[1] if len(argv) > 1 else "/health/live"
    return 0 if http_ok(port, path) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
