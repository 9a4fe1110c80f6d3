"""The dashboard: static files (``api/static/``) served at ``/``, and the browser
libraries installed by npm (``npm ci`` at the repository root) under ``/vendor/``.

The pages are plain ES modules, no build step. A library is served from ``node_modules``
where it was installed (the repository root, or the working directory); when it is
missing the page that needs it says to run ``make install``.
"""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path

from litestar import Router
from litestar.static_files import create_static_files_router

log = logging.getLogger(__name__)

#: URL path -> directory inside ``node_modules``.
VENDOR = {
    "/vendor/lightweight-charts": "lightweight-charts/dist",
    "/vendor/swagger-ui": "swagger-ui-dist",  # the OpenAPI page at /schema
}


def node_modules() -> Path | None:
    """The first ``node_modules`` of: the repository this package runs from (an editable
    install), the working directory."""
    repo = Path(__file__).resolve().parents[3]
    for base in (repo, Path.cwd()):
        if (base / "node_modules").is_dir():
            return base / "node_modules"
    return None


def dashboard_routers() -> list[Router]:
    """The vendor libraries found, then the pages at ``/`` (``index.html`` for ``/``)."""
    routers = []
    found = node_modules()
    for path, folder in VENDOR.items():
        if found is not None and (found / folder).is_dir():
            routers.append(create_static_files_router(path, [found / folder], name=path))
        else:
            log.warning("dashboard library missing path=%s (run make install)", path)
    static = Path(str(resources.files("tradepulse.api") / "static"))
    routers.append(create_static_files_router("/", [static], html_mode=True, name="dashboard"))
    return routers
