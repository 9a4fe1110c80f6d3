"""Request metrics: ``HTTP_REQUESTS{route, method, status}`` and ``HTTP_SECONDS{route}``.

An ASGI middleware around every matched route: ``route`` is the path template
(``/api/v1/rules/{rule_id}``, never the raw path, so the label stays bounded) and
``status`` the class of the status sent (``2xx``, ``4xx``, ``5xx``); an error answered by
an exception handler is seen with its status. Requests for no route (a 404 before any
handler) are not counted: their paths are unbounded.
"""

from __future__ import annotations

import time

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from tradepulse import metrics


def request_metrics(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        method = scope["method"]
        status = 500  # a failure that sent nothing

        async def watching(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        started = time.perf_counter()
        try:
            await app(scope, receive, watching)
        finally:
            route = str(scope.get("path_template") or "unmatched")
            metrics.HTTP_SECONDS.labels(route).observe(time.perf_counter() - started)
            metrics.HTTP_REQUESTS.labels(route, method, f"{status // 100}xx").inc()

    return middleware
