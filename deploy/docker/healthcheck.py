"""Container health probe, standard library only (the image has no curl).

    healthcheck.py                 GET /health/live on the port of the role PID 1 runs:
                                   $TRADEPULSE_PERSIST_HTTP_PORT (9101) for `persist`,
                                   else $TRADEPULSE_HTTP_PORT (9100)
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


def pid1_args() -> list[str]:
    """The command line of PID 1 (``["tradepulse", "persist"]`` in a persister container)."""
    try:
        with open("/proc/1/cmdline", "rb") as cmdline:
            return [a.decode(errors="replace") for a in cmdline.read().split(b"\0") if a]
    except OSError:
        return []


def role(args: list[str]) -> str:
    """The tradepulse command in a command line: the argument after ``tradepulse`` (the
    console script, run by its interpreter as ``python /opt/venv/bin/tradepulse persist``,
    or ``python -m tradepulse persist``)."""
    for i, arg in enumerate(args[:-1]):
        if arg.rsplit("/", 1)[-1] == "tradepulse":
            return args[i + 1]
    return ""


def default_port(args: list[str], environ: dict[str, str]) -> str:
    """The operations port of the role in ``args`` (PID 1's command line)."""
    if role(args) == "persist":
        return environ.get("TRADEPULSE_PERSIST_HTTP_PORT", "9101")
    return environ.get("TRADEPULSE_HTTP_PORT", "9100")


def main(argv: list[str]) -> int:
    if argv[:1] == ["--process"]:
        return 0 if process_ok() else 1
    port = argv[0] if argv else default_port(pid1_args(), dict(os.environ))
    path = argv[1] if len(argv) > 1 else "/health/live"
    return 0 if http_ok(port, path) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
