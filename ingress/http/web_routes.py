"""The web pages (chat at ``/``, console at ``/console``) and their static files under ``/static/``.

Plain ES modules and CSS from ``ingress/web/``, no build step for our own code. Every response
carries a strict Content-Security-Policy (no inline script or style), so server text that ever
reached the DOM as markup still could not run. HTML is never cached; static files are
revalidated with their ETag / Last-Modified.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from aiohttp import web

from ingress.http.api_docs import documented
from ingress.proxies import Network, forwarded_host, request_scheme

WEB_ROOT = Path(__file__).resolve().parents[1] / "web"
CSP = (
    "default-src 'self'; connect-src 'self' ws: wss:; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}

web_routes = web.RouteTableDef()


def _file(path: Path) -> web.FileResponse:
    """A file with the security headers; ``no-cache`` means "revalidate", which the ETag makes cheap."""
    return web.FileResponse(path, headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"})


@web_routes.get("/")
@documented({200: "The chat page"}, media_type="text/html")
async def chat_page(request: web.Request) -> web.FileResponse:
    """The chat page (ES modules and CSS under /static/)."""
    return _file(WEB_ROOT / "index.html")


@web_routes.get("/console")
@documented({200: "The console page"}, media_type="text/html")
async def console_page(request: web.Request) -> web.FileResponse:
    """The operator and admin console."""
    return _file(WEB_ROOT / "console.html")


@web_routes.get("/static/{path:.+}")
async def static_file(request: web.Request) -> web.FileResponse:
    relative = request.match_info["path"]
    try:
        path = (WEB_ROOT / relative).resolve(strict=True)
    except (OSError, RuntimeError, ValueError):
        raise web.HTTPNotFound() from None
    if not path.is_file() or not path.is_relative_to(WEB_ROOT) or path.name.startswith("."):
        raise web.HTTPNotFound()
    return _file(path)


def socket_origins(
    allowed: Iterable[str], trusted_proxies: Iterable[Network] = ()
) -> Callable[[str | None, dict[str, Any]], bool]:
    """Socket.IO's origin check: ``ALLOWED_ORIGINS`` plus the node's own origin, so the pages it
    serves can connect back to it on whatever host and port it is reached (behind a proxy in
    ``trusted_proxies`` too: only such a proxy's X-Forwarded-Host/-Proto are believed)."""
    listed = frozenset(allowed)
    trusted = tuple(trusted_proxies)

    def check(origin: str | None, environ: dict[str, Any]) -> bool:
        if origin is None or "*" in listed or origin in listed:
            return True
        request = environ.get("aiohttp.request")
        if not isinstance(request, web.BaseRequest):
            return False
        scheme = request_scheme(request, trusted)
        hosts = {request.headers.get("Host"), forwarded_host(request, trusted)}
        return any(host and origin == f"{scheme}://{host}" for host in hosts)

    return check
