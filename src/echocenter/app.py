"""The FastAPI application: factory and lifespan (migrations, first admin, background tasks).

The lifespan wires the parts in a straight line, lowest first, each handed what it needs when it is built:
the Feishu apps registry, the outbox and outbound client on it, approvals on those, the Butler on approvals,
and last the bridge (the connection manager), which hands each message to the Butler and each card click to
approvals. Nothing is replaced or filled in afterwards.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
from fastapi import Depends, FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.datastructures import State

from echocenter import metrics_api
from echocenter.agents import api as agents_api
from echocenter.agents.hub import AgentHub
from echocenter.agents.socket import AgentSocketRoute
from echocenter.api import health
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
from echocenter.auth.deps import get_current_admin, get_current_user
from echocenter.auth.passwords import Passwords
from echocenter.butler.brains import Brain, LLMBrain, RuleBrain
from echocenter.butler.service import ButlerService
from echocenter.cluster.fleet_lock import once_per_fleet
from echocenter.cluster.instances import prune_departed
from echocenter.cluster.node import ClusterNode
from echocenter.connectors import api as connectors_api
from echocenter.contracts import MessageHandler
from echocenter.db.engine import make_engine, make_sessionmaker
from echocenter.db.migrate import upgrade_to_head
from echocenter.feishu import webhook
from echocenter.feishu.apps import FeishuApps
from echocenter.feishu.attachments import AttachmentReader
from echocenter.feishu.bridge import FeishuBridge
from echocenter.feishu.callback_guard import RejectionThrottle, forget_sightings
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


async def _ensure_first_admin(runtime: Runtime, passwords: Passwords) -> None:
    settings = runtime.settings
    async with runtime.sessions() as session:
        if settings.initial_admin_user and settings.initial_admin_pass:
            if await auth_service.ensure_initial_admin(
                session,
                passwords=passwords,
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
            session, passwords=passwords, username="admin", password=password
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


def live_parts(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], apps: FeishuApps, outbound: Outbound
) -> dict[str, Any]:
    """Streaming cards, the thinking reaction and attachment reading for the Butler (issue 14)."""
    return {
        "streams": CardStreams(
            sessions,
            apps,
            outbound,
            first_update_after=settings.streaming_first_update_seconds,
            min_interval=settings.streaming_min_interval_seconds,
        ),
        "reactions": Reactions(apps),
        "attachments": AttachmentReader(
            apps,
            # only a model sees: the rule brain says it cannot, whatever BUTLER_VISION says
            vision=settings.butler_vision and llm_configured(settings),
            image_max_bytes=settings.butler_image_max_bytes,
            file_max_bytes=settings.butler_file_max_bytes,
        ),
    }


# --- the lifespan's wiring steps, in the order they run ----------------------------------------------------
async def _open_runtime(settings: Settings) -> Runtime:
    """Data files made private, the database migrated, one pooled HTTP client for Feishu."""
    settings.resolve_generated_secrets()
    secure_sqlite_files(settings.resolved_database_url)
    # An older install may have left the handed-over password readable by others.
    make_private(settings.data_dir / INITIAL_ADMIN_PASSWORD_FILE)
    engine = make_engine(settings.resolved_database_url, schema=settings.database_schema)
    await upgrade_to_head(engine)
    return Runtime(
        settings=settings,
        engine=engine,
        sessions=make_sessionmaker(engine),
        secrets=SecretBox(settings.secrets_key),
        http=httpx.AsyncClient(limits=httpx.Limits(max_connections=100, max_keepalive_connections=20)),
    )


@dataclass(frozen=True, slots=True)
class Services:
    """The running parts, each built once with what it needs."""

    cluster: ClusterNode
    agents: AgentHub
    outbox: Outbox
    outbound: Outbound
    workflow: ApprovalWorkflow
    bridge: FeishuBridge


async def _wire_services(runtime: Runtime, tasks: TaskSet, butler: MessageHandler | None) -> Services:
    """Lowest first: no part is built before what it calls (``butler`` replaces the Butler service)."""
    settings = runtime.settings
    cluster = await ClusterNode.join(runtime, start=tasks.start)
    agents = _agent_hub(cluster)
    apps = FeishuApps()
    outbox = _outbox(runtime, apps)
    outbound = Outbound(outbox)
    contacts = ContactDirectory(runtime.sessions, apps, ttl_seconds=settings.contact_name_ttl)
    workflow = ApprovalWorkflow(
        runtime, outbound=outbound, hub=agents, spawn=tasks.start, bus=cluster.bus, contacts=contacts
    )
    handler = butler or _butler_service(runtime, tasks, apps, outbound, workflow, agents)
    bridge = FeishuBridge(
        runtime, apps=apps, butler=handler, card_handler=workflow.on_card_click, bus=cluster.bus
    )
    return Services(cluster, agents, outbox, outbound, workflow, bridge)


def _agent_hub(cluster: ClusterNode) -> AgentHub:
    agents = AgentHub(cluster.presence, roster=cluster.agents_online)

    async def disconnect_agent(notice: dict[str, Any]) -> None:  # revoked or re-keyed on any instance
        await agents.disconnect(str(notice.get("name")))

    cluster.bus.subscribe(agents_api.AGENT_DISCONNECT, disconnect_agent)
    return agents


def _outbox(runtime: Runtime, apps: FeishuApps) -> Outbox:
    settings = runtime.settings
    limits = PacingLimits(
        per_app_qps=settings.feishu_send_qps_per_app,
        per_app_per_minute=settings.feishu_send_per_minute_per_app,
        per_chat_qps=settings.feishu_send_qps_per_chat,
        per_message_patch_qps=settings.feishu_patch_qps_per_message,
    )
    return Outbox(runtime.sessions, apps, limits=limits, dialect=runtime.engine.dialect.name)


def _butler_service(
    runtime: Runtime,
    tasks: TaskSet,
    apps: FeishuApps,
    outbound: Outbound,
    workflow: ApprovalWorkflow,
    agents: AgentHub,
) -> ButlerService:
    settings = runtime.settings
    butler = ButlerService(
        runtime,
        brain=make_brain(settings),
        outbound=outbound,
        workflow=workflow,
        hub=agents,
        spawn=tasks.start,
        **live_parts(settings, runtime.sessions, apps, outbound),
    )
    tasks.start("butler-loops", _every(settings.inbox_sweep_seconds, butler.sweep_loops))
    return butler


def _publish(state: State, runtime: Runtime, passwords: Passwords, services: Services) -> None:
    """What the routers' dependencies read (api/deps.py and each domain's deps.py)."""
    state.runtime, state.passwords, state.bus = runtime, passwords, services.cluster.bus
    state.bridge, state.agents, state.workflow = services.bridge, services.agents, services.workflow
    state.outbound, state.outbox = services.outbound, services.outbox
    state.callback_rejections = RejectionThrottle(runtime.settings.feishu_callback_reject_log_seconds)


async def _prune_once(runtime: Runtime) -> None:
    """Retention: old log entries, seen message ids, login attempts, callback signatures, departed instances
    and sent outbox rows (by one instance of the fleet at a time)."""
    settings = runtime.settings
    async with once_per_fleet(runtime.engine, "retention", schema=settings.database_schema) as mine:
        if not mine:
            return
        async with runtime.sessions() as session:
            removed = await logs.prune(
                session,
                max_age=timedelta(days=settings.log_retention_days),
                max_rows=settings.log_retention_max_rows,
                max_audit_rows=settings.log_retention_max_audit_rows,
            )
            retention = timedelta(days=settings.dedup_retention_days)
            forgotten = await prune_seen_messages(session, max_age=retention)
            await auth_service.prune_login_attempts(session)
            await forget_sightings(session, window_seconds=settings.feishu_callback_max_skew_seconds)
            await prune_departed(session, older_than=DEPARTED_INSTANCE_RETENTION)
            await prune_outbox(session, max_age=retention)
        if removed or forgotten:
            log_event(log, "retention_pruned", integration_logs=removed, seen_messages=forgotten)


async def _sweep_approvals(runtime: Runtime, workflow: ApprovalWorkflow) -> None:
    schema = runtime.settings.database_schema
    async with once_per_fleet(runtime.engine, "approval-sweep", schema=schema) as mine:
        if mine:
            await workflow.sweep_expired()
            await workflow.recover_interrupted()
            await workflow.sweep_reminders()


def _start_periodic_jobs(runtime: Runtime, tasks: TaskSet, services: Services) -> None:
    settings = runtime.settings
    prune = functools.partial(_prune_once, runtime)
    sweep = functools.partial(_sweep_approvals, runtime, services.workflow)
    tasks.start("retention", _every(settings.log_retention_sweep_seconds, prune))
    tasks.start("approval-expiry", _every(settings.approval_sweep_seconds, sweep))
    tasks.start(
        "connector-reconcile", _every(settings.connector_reconcile_seconds, services.bridge.reconcile)
    )
    # The durable inbox: its first run is the start-up re-drive of what a crash left behind.
    tasks.start("inbox-redrive", _every(settings.inbox_sweep_seconds, services.bridge.redrive))


async def _shut_down(runtime: Runtime, tasks: TaskSet, services: Services) -> None:
    await services.outbox.stop()
    await services.bridge.stop()
    await tasks.stop()
    await services.cluster.leave()
    await runtime.http.aclose()
    await runtime.engine.dispose()


def _lifespan(
    settings: Settings, butler: MessageHandler | None
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = await _open_runtime(settings)
        passwords = Passwords.from_settings(settings)
        await _ensure_first_admin(runtime, passwords)
        tasks = TaskSet()
        services = await _wire_services(runtime, tasks, butler)
        _publish(app.state, runtime, passwords, services)
        _start_periodic_jobs(runtime, tasks, services)
        await services.bridge.start()
        services.outbox.start()
        dialect = runtime.engine.dialect.name
        log_event(log, "service_started", environment=settings.environment.value, database=dialect)
        try:
            yield
        finally:
            await _shut_down(runtime, tasks, services)

    return lifespan


# --- the HTTP side ----------------------------------------------------------------------------------------
def _install_http_layers(app: FastAPI, settings: Settings) -> None:
    install_error_handlers(app)
    install_error_docs(app, by_dependency={get_current_user: 401, get_current_admin: 403})
    install_method_not_allowed(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(AgentSocketRoute)  # outermost: 20,000 agent sockets skip the router's stack


def _include_routes(app: FastAPI) -> None:
    for module in (health, metrics_api, auth_api, connectors_api, webhook, agents_api, approvals_api):
        app.include_router(module.router)
    mount_web(app)
    mount_docs(app)


def create_app(settings: Settings | None = None, *, butler: MessageHandler | None = None) -> FastAPI:
    """The service. ``butler`` replaces the Butler service (tests of the ingress pass a recording one)."""
    settings = settings or Settings()
    app = FastAPI(
        title="EchoCenter",
        version="0.1.0",
        summary="Feishu Butler with a human gate on every command",
        lifespan=_lifespan(settings, butler),
        # Hardening: /docs is served from local assets (mount_docs), FastAPI's CDN pages are off; a NUL is
        # refused in every request value; security headers wrap every response, errors included.
        docs_url=None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
        dependencies=[Depends(refuse_nul_characters)],
    )
    _install_http_layers(app, settings)
    _include_routes(app)
    return app
