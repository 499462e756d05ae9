"""Admin HTTP API for tenants: ``/api/admin/tenants`` (``x-admin-token``)."""

from __future__ import annotations

from aiohttp import web

from infra import grants, ledger, tenants
from ingress.http.api_docs import ADMIN_OR_JWT, documented
from ingress.http.errors import BadRequest, Conflict, Forbidden, NotFound
from ingress.http.http_api import GRANTED, grant_conflict, parse_body, require_admin
from ingress.state import APP_STATE
from schemas.http import GrantCredits
from schemas.tenants import ChannelRef, CreateTenant, UpdateTenant

tenant_routes = web.RouteTableDef()


def _pairs(refs: list[ChannelRef]) -> list[tuple[str, str]]:
    return [(ref.channel.value, ref.address) for ref in refs]


@tenant_routes.post("/api/admin/tenants")
@documented({201: "The tenant"}, BadRequest, Forbidden, Conflict, auth=ADMIN_OR_JWT, body=CreateTenant)
async def create_tenant(request: web.Request) -> web.Response:
    """Create a tenant with its channels (admins)."""
    require_admin(request)
    body: CreateTenant = await parse_body(request, CreateTenant)
    pool = request.app[APP_STATE].pool
    try:
        tenant = await tenants.create(
            pool, body.tenantId, body.name, body.systemPrompt, body.autoReply, _pairs(body.channels)
        )
    except tenants.TenantExists:
        raise Conflict(f"tenant {body.tenantId!r} already exists") from None
    except tenants.ChannelTaken as exc:
        raise Conflict(str(exc)) from None
    return web.json_response(tenant.as_json(), status=201)


@tenant_routes.get("/api/admin/tenants")
@documented({200: "Every tenant"}, Forbidden, auth=ADMIN_OR_JWT)
async def list_tenants(request: web.Request) -> web.Response:
    """List the tenants (admins)."""
    require_admin(request)
    rows = await tenants.list_all(request.app[APP_STATE].pool)
    return web.json_response({"tenants": [t.as_json() for t in rows]})


@tenant_routes.get("/api/admin/tenants/{tenantId}")
@documented({200: "The tenant"}, Forbidden, NotFound, auth=ADMIN_OR_JWT)
async def show_tenant(request: web.Request) -> web.Response:
    """One tenant (admins)."""
    require_admin(request)
    tenant = await tenants.get(request.app[APP_STATE].pool, request.match_info["tenantId"])
    if tenant is None:
        raise NotFound("no such tenant", code="unknown_tenant")
    return web.json_response(tenant.as_json())


@tenant_routes.patch("/api/admin/tenants/{tenantId}")
@documented({200: "The tenant"}, BadRequest, Forbidden, NotFound, Conflict, auth=ADMIN_OR_JWT, body=UpdateTenant)
async def update_tenant(request: web.Request) -> web.Response:
    """Change a tenant, add or remove its channels (admins)."""
    require_admin(request)
    body: UpdateTenant = await parse_body(request, UpdateTenant)
    try:
        tenant = await tenants.update(
            request.app[APP_STATE].pool,
            request.match_info["tenantId"],
            name=body.name,
            system_prompt=body.systemPrompt,
            auto_reply=body.autoReply,
            add_channels=_pairs(body.addChannels),
            remove_channels=_pairs(body.removeChannels),
        )
    except tenants.ChannelTaken as exc:
        raise Conflict(str(exc)) from None
    if tenant is None:
        raise NotFound("no such tenant", code="unknown_tenant")
    return web.json_response(tenant.as_json())


@tenant_routes.post("/api/admin/tenants/{tenantId}/grant")
@documented(GRANTED, BadRequest, Forbidden, NotFound, Conflict, auth=ADMIN_OR_JWT, body=GrantCredits)
async def grant_tenant(request: web.Request) -> web.Response:
    """Grant credits to a tenant (admins), once per idempotencyKey."""
    require_admin(request)
    body: GrantCredits = await parse_body(request, GrantCredits)
    pool = request.app[APP_STATE].pool
    tenant_id = request.match_info["tenantId"]
    if await tenants.get(pool, tenant_id) is None:
        raise NotFound("no such tenant", code="unknown_tenant")
    result = await grants.grant(pool, ledger.tenant_account(tenant_id), body.credits, body.reason, body.idempotencyKey)
    if result.conflict:
        raise grant_conflict(result, body.credits)
    return web.json_response(
        {"tenantId": tenant_id, "applied": result.applied, "credits": result.credits, "wordsLeft": result.words_left},
        status=201 if result.applied else 200,
    )
