"""The litestar app factory: it takes its settings, so tests never patch the environment."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import AsyncIterator

from litestar import Litestar
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin

from .csc.service import CscService
from .errors import EXCEPTION_HANDLERS
from .oauth.service import ClientAuthenticator, TokenService
from .routes import ROUTES, reject_nul_middleware
from .runtime import Runtime
from .settings import Settings
from .web.metrics import Metrics, metrics_middleware

log = logging.getLogger("rqes")


def create_app(settings: Settings) -> Litestar:
    from .oid4vp import load_trust_anchors
    from .oauth.routes import ROUTES as OAUTH_ROUTES
    from .oid4vp.routes import ROUTES as OID4VP_ROUTES

    metrics = Metrics()
    load_trust_anchors(settings)  # a bad setting fails here, before serving

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        rt = await Runtime.open(settings)
        label, key_type, kid, spki = rt.as_key
        app.state.runtime = rt
        app.state.metrics = metrics
        app.state.authenticator = ClientAuthenticator(
            rt.clients, rt.nonces, rt.clock, f"{settings.issuer}/oauth2/token", settings.issuer)
        app.state.tokens = TokenService(
            keys=rt.keys, label=label, key_type=key_type, kid=kid, public_key_der=spki, issuer=settings.issuer,
            lifetime=settings.access_token_lifetime, clock=rt.clock, clients=rt.clients, audit=rt.audit,
            skew=settings.clock_skew, engine=rt.engine)
        from .oauth.authorization import AuthorizationServer

        app.state.authorization = AuthorizationServer(rt, app.state.authenticator, app.state.tokens)
        from .enroll import enroll
        from .oid4vp.service import VerifierService

        app.state.verifier = None
        if rt.wallet_verifier is not None:  # wallet flows need a trusted PID issuer; seals work without
            verifier = VerifierService(rt, rt.wallet_verifier(None), client_id_prefix=settings.oid4vp_client_id_prefix)
            verifier.on("enroll", lambda t, v, ev: enroll(rt, v, ev.evidence_id, transaction_id=t.id))
            verifier.on("login", app.state.authorization.on_login)
            verifier.on("authorize", app.state.authorization.on_credential_approval, verify=False)
            app.state.verifier = verifier
        else:
            log.warning("no trusted PID issuers (RQES_TRUSTED_PID_ISSUERS, RQES_DEMO): wallet enrollment is off")
        app.state.csc = CscService(rt, app.state.verifier)
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
        route_handlers=[*ROUTES, *OID4VP_ROUTES, *OAUTH_ROUTES],
        lifespan=[lifespan],
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        middleware=[metrics_middleware(metrics), reject_nul_middleware(settings.max_body_bytes)],
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(title="rqes", version="0.1.0", path="/schema", render_plugins=[SwaggerRenderPlugin()]),
        debug=False,
    )
