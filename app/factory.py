"""The litestar app factory: it takes its settings, so tests never patch the environment."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import AsyncIterator

from litestar import Litestar
from litestar.config.app import AppConfig
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin

from .csc.service import CscService
from .errors import EXCEPTION_HANDLERS
from .oauth.service import ClientAuthenticator, TokenService
from .routes import ROUTES
from .runtime import Runtime
from .settings import Settings
from .web.metrics import Metrics, metrics_middleware

log = logging.getLogger("rqes")


def create_app(settings: Settings) -> Litestar:
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        rt = await Runtime.open(settings)
        label, key_type, kid, spki = rt.as_key
        app.state.runtime = rt
        app.state.metrics = metrics
        app.state.csc = CscService(rt)
        app.state.authenticator = ClientAuthenticator(
            rt.clients, rt.nonces, rt.clock, f"{settings.issuer}/oauth2/token", settings.issuer)
        app.state.tokens = TokenService(
            keys=rt.keys, label=label, key_type=key_type, kid=kid, public_key_der=spki, issuer=settings.issuer,
            lifetime=settings.access_token_lifetime, clock=rt.clock, clients=rt.clients, audit=rt.audit,
            skew=settings.clock_skew)
        purged = await rt.ledger.purge(rt.clock.now())
        log.info("rqes ready (issuer %s, %d stale SAD entries purged)", settings.issuer, purged)
        try:
            yield
        finally:
            try:
                await rt.audit.checkpoint()
            finally:
                await rt.close()

    return Litestar(
        route_handlers=ROUTES,
        lifespan=[lifespan],
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        middleware=[metrics_middleware(metrics)],
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(title="rqes", version="0.1.0", path="/schema", render_plugins=[SwaggerRenderPlugin()]),
        debug=False,
    )
