"""The FastAPI application: factory and lifespan (migrations, first admin, background tasks)."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import httpx
from fastapi import Depends, FastAPI

from echocenter.agents import api as agents_api
from echocenter.agents.hub import AgentHub
from echocenter.agents.socket import AgentSocketRoute
from echocenter.api import health
from echocenter.api import metrics as metrics_api
from echocenter.api.body_limit import BodySizeLimit
from echocenter.api.docs import mount_docs
from echocenter.api.error_docs import install_error_docs
from echocenter.api.error_handlers import install_error_handlers
from echocenter.api.method_not_allowed import install_method_not_allowed
from echocenter.api.nul_guard import refuse_nul_characters
from echocenter.api.security_headers import SecurityHeaders
from echocenter.api.web import mount_web
from echocenter.approvals import api as approvals_api
from echocenter.approvals.workflow import ApprovalWorkflow
from echocenter.auth import api as auth_api
from echocenter.auth import service as auth_service
from echocenter.auth.passwords import Passwords
from echocenter.butler.brains import Brain, LLMBrain, RuleBrain
from echocenter.butler.interface import Butler, UnconfiguredButler
from echocenter.butler.service import ButlerService
from echocenter.cluster.fleet_lock import once_per_fleet
from echocenter.cluster.instances import prune_departed
from echocenter.cluster.node import ClusterNode
from echocenter.connectors import api as connectors_api
from echocenter.db.engine import make_engine, make_sessionmaker
from echocenter.db.migrate import upgrade_to_head
from echocenter.feishu import webhook
from echocenter.feishu.attachments import AttachmentReader
from echocenter.feishu.bridge import FeishuBridge
from echocenter.feishu.callback_guard import forget_sightings
from echocenter.feishu.contacts import ContactDirectory
from echocenter.feishu.inbound import prune_seen_messages
from echocenter.feishu.outbound import Outbound
from echocenter.feishu.outbox import Outbox, PacingLimits, prune_outbox
from echocenter.feishu.reactions import Reactions
from echocenter.feishu.streaming import CardStreams
from echocenter.filemodes import make_private, secure_sqlite_files, write_private
from echocenter.integration_logs import service as logs
from echocenter.logging_setup import log_event
from echocenter.runtime import Runtime
from echocenter.secretbox import SecretBox
from echocenter.settings import Environment, Settings
from echocenter.taskset import TaskSet

log = logging.getLogger(__name__)
DEPARTED_INSTANCE_RETENTION = timedelta(days=1)

INITIAL_ADMIN_PASSWORD_FILE = "initial-admin-password"


async def _every(seconds: float, job: Callable[[], Awaitable[None]]) -> None:
    while True:
        try:
            await job()
        except Exception:
            log.exception("periodic_job_failed")
        await asyncio.sleep(seconds)


async def _ensure_first_admin(runtime: Runtime) -> None:
    settings = runtime.settings
    async with runtime.sessions() as session:
        if settings.initial_admin_user and settings.initial_admin_pass:
            if await auth_service.ensure_initial_admin(
                session,
                passwords=runtime.passwords,
                username=settings.initial_admin_user,
                password=settings.initial_admin_pass,
            ):
                log_event(log, "initial_admin_created", username=settings.initial_admin_user)
            return
        if await auth_service.count_users(session) > 0 or settings.environment is not Environment.DEVELOPMENT:
            return
        # A fresh development install with no admin configured: make one, and hand its password over in a
        # file only the owner can read (never in the log).
        password = secrets.token_urlsafe(18)
        if not await auth_service.ensure_initial_admin(
            session, passwords=runtime.passwords, username="admin", password=password
        ):
            return  # another instance started at the same moment made it (and wrote the file)
        path = settings.data_dir / INITIAL_ADMIN_PASSWORD_FILE
        write_private(path, password + "\n")
        log_event(log, "initial_admin_created", username="admin", password_file=str(path))


def llm_configured(settings: Settings) -> bool:
    return bool(settings.butler_base_url and settings.butler_api_token and settings.butler_model)


def make_brain(settings: Settings) -> Brain:
    if llm_configured(settings):
        return LLMBrain(
            base_url=settings.butler_base_url,
            api_token=settings.butler_api_token,
            model=settings.butler_model,
            timeout=settings.butler_timeout,
            max_retries=settings.butler_max_retries,
        )
    return RuleBrain()


def live_parts(settings: Settings, sessions: Any, bridge: FeishuBridge, outbound: Outbound) -> dict[str, Any]:
    """Streaming cards, the thinking reaction and attachment reading for the Butler (issue 14)."""
    return {
        "streams": CardStreams(
            sessions,
            bridge,
            outbound,
            first_update_after=settings.streaming_first_update_seconds,
            min_interval=settings.streaming_min_interval_seconds,
        ),
        "reactions": Reactions(bridge),
        "attachments": AttachmentReader(
            bridge,
            # only a model sees: the rule brain says it cannot, whatever BUTLER_VISION says
            vision=settings.butler_vision and llm_configured(settings),
            image_max_bytes=settings.butler_image_max_bytes,
            file_max_bytes=settings.butler_file_max_bytes,
        ),
    }


def create_app(settings: Settings | None = None, *, butler: Butler | None = None) -> FastAPI:
    """The service. ``butler`` replaces the Butler service (tests of the ingress pass a recording one)."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.resolve_generated_secrets()
        secure_sqlite_files(settings.resolved_database_url)
        # An older install may have left the handed-over password readable by others.
        make_private(settings.data_dir / INITIAL_ADMIN_PASSWORD_FILE)
        engine = make_engine(settings.resolved_database_url, schema=settings.database_schema)
        await upgrade_to_head(engine)
        http = httpx.AsyncClient(limits=httpx.Limits(max_connections=100, max_keepalive_connections=20))
        runtime = Runtime(
            settings=settings,
            engine=engine,
            sessions=make_sessionmaker(engine),
            secrets=SecretBox(settings.secrets_key),
            passwords=Passwords.from_settings(settings),
            http=http,
        )
        app.state.runtime = runtime
        await _ensure_first_admin(runtime)

        tasks = TaskSet()
        cluster = await ClusterNode.join(runtime, start=tasks.start)
        agents = AgentHub(cluster.presence, roster=cluster.agents_online)

        async def disconnect_agent(notice: dict[str, Any]) -> None:  # revoked or re-keyed on any instance
            await agents.disconnect(str(notice.get("name")))

        cluster.bus.subscribe(agents_api.AGENT_DISCONNECT, disconnect_agent)
        app.state.bus = cluster.bus
        bridge = FeishuBridge(runtime, butler=butler or UnconfiguredButler(), bus=cluster.bus)
        outbox = Outbox(
            runtime.sessions,
            bridge,
            limits=PacingLimits(
                per_app_qps=settings.feishu_send_qps_per_app,
                per_app_per_minute=settings.feishu_send_per_minute_per_app,
                per_chat_qps=settings.feishu_send_qps_per_chat,
                per_message_patch_qps=settings.feishu_patch_qps_per_message,
            ),
            dialect=engine.dialect.name,
        )
        outbound = Outbound(outbox)
        contacts = ContactDirectory(runtime.sessions, bridge, ttl_seconds=settings.contact_name_ttl)
        workflow = ApprovalWorkflow(
            runtime,
            outbound=outbound,
            hub=agents,
            spawn=tasks.start,
            bus=cluster.bus,
            contacts=contacts,
        )
        bridge.card_handler = workflow.on_card_click
        if butler is None:
            bridge.butler = ButlerService(
                runtime,
                brain=make_brain(settings),
                outbound=outbound,
                workflow=workflow,
                hub=agents,
                spawn=tasks.start,
                **live_parts(settings, runtime.sessions, bridge, outbound),
            )
            tasks.start("butler-loops", _every(settings.inbox_sweep_seconds, bridge.butler.sweep_loops))
        app.state.bridge, app.state.agents, app.state.workflow = bridge, agents, workflow
        app.state.outbound, app.state.outbox = outbound, outbox

        async def prune() -> None:
            async with once_per_fleet(engine, "retention", schema=settings.database_schema) as mine:
                if mine:
                    await _prune()

        async def _prune() -> None:
            async with runtime.sessions() as session:
                removed = await logs.prune(
                    session,
                    max_age=timedelta(days=settings.log_retention_days),
                    max_rows=settings.log_retention_max_rows,
                    max_audit_rows=settings.log_retention_max_audit_rows,
                )
                forgotten = await prune_seen_messages(
                    session, max_age=timedelta(days=settings.dedup_retention_days)
                )
                await auth_service.prune_login_attempts(session)
                await forget_sightings(session, window_seconds=settings.feishu_callback_max_skew_seconds)
                await prune_departed(session, older_than=DEPARTED_INSTANCE_RETENTION)
                await prune_outbox(session, max_age=timedelta(days=settings.dedup_retention_days))
            if removed or forgotten:
                log_event(log, "retention_pruned", integration_logs=removed, seen_messages=forgotten)

        tasks.start("retention", _every(settings.log_retention_sweep_seconds, prune))

        async def sweep() -> None:
            async with once_per_fleet(engine, "approval-sweep", schema=settings.database_schema) as mine:
                if mine:
                    await workflow.sweep_expired()
                    await workflow.recover_interrupted()
                    await workflow.sweep_reminders()

        tasks.start("approval-expiry", _every(settings.approval_sweep_seconds, sweep))
        tasks.start("connector-reconcile", _every(settings.connector_reconcile_seconds, bridge.reconcile))
        # The durable inbox: its first run is the start-up re-drive of what a crash left behind.
        tasks.start("inbox-redrive", _every(settings.inbox_sweep_seconds, bridge.redrive))
        app.state.tasks = tasks
        await bridge.start()
        outbox.start()
        log_event(
            log, "service_started", environment=settings.environment.value, database=engine.dialect.name
        )
        try:
            yield
        finally:
            await outbox.stop()
            await bridge.stop()
            await tasks.stop()
            await cluster.leave()
            await http.aclose()
            await engine.dispose()

    app = FastAPI(
        title="EchoCenter",
        version="0.1.0",
        summary="Feishu Butler with a human gate on every command",
        lifespan=lifespan,
        # Hardening: /docs is served from local assets (mount_docs), FastAPI's CDN pages are off; a NUL is
        # refused in every request value; security headers wrap every response, errors included.
        docs_url=None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
        dependencies=[Depends(refuse_nul_characters)],
    )
    install_error_handlers(app)
    install_error_docs(app)
    install_method_not_allowed(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(AgentSocketRoute)  # outermost: 20,000 agent sockets skip the router's stack
    app.include_router(health.router)
    app.include_router(metrics_api.router)
    app.include_router(auth_api.router)
    app.include_router(connectors_api.router)
    app.include_router(webhook.router)
    app.include_router(agents_api.router)
    app.include_router(approvals_api.router)
    mount_web(app)
    mount_docs(app)
    return app
