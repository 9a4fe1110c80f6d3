"""``tradepulse api``: the REST API, OpenAPI (``/schema``) and the operations endpoints,
served by uvicorn (registered by ``cli.py`` as ``app.command("api")(api_cmd)``).

The port is bound here before uvicorn starts, so a taken port or a bad host is a clean
error (exit 2) rather than uvicorn's own exit; so is an application that cannot start.
"""

from __future__ import annotations

import logging
import socket
from typing import Annotated

import typer

from tradepulse.cli_common import err, settings_or_exit


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (IPv4 or IPv6 as the host resolves)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        err.print(f"[red]error:[/] cannot listen on {host}:{port}: {exc}")
        raise typer.Exit(2) from exc
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        err.print(f"[red]error:[/] cannot listen on {host}:{port}: {exc.strerror or exc}")
        raise typer.Exit(2) from exc
    return sock


def api_cmd(
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="TCP port.")] = 8000,
) -> None:
    """Serve the REST API (/api/v1), the WebSocket /ws, OpenAPI (/schema) and the operations
    endpoints (/health, /metrics, /performance) over the live state in Redis and the candles
    in PostgreSQL (configured by the TRADEPULSE_* environment, see .env.example)."""
    import uvicorn

    from tradepulse.api.app import ApiDeps, create_app
    from tradepulse.api.ws import TokenQueryRedactor
    from tradepulse.wiring import configure_logging

    settings = settings_or_exit()
    configure_logging(settings)
    for name in ("uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).addFilter(TokenQueryRedactor())
    app = create_app(ApiDeps.from_settings(settings))
    sock = _bind(host, port)
    config = uvicorn.Config(app, log_config=None, lifespan="on", ws_per_message_deflate=False,
                            ws_max_size=1 << 20)  # fmt: skip
    server = uvicorn.Server(config)
    with sock:
        server.run(sockets=[sock])
    if not server.started:
        err.print("[red]error:[/] the API did not start (see the log)")
        raise typer.Exit(2)
