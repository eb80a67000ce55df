"""Every environment variable EchoCenter reads, in one place (README's configuration table mirrors it)."""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from echocenter.credential_rules import password_problem, username_problem
from echocenter.filemodes import make_private, make_private_dir, write_private

# Values people paste from tutorials; refused as JWT_SECRET anywhere but development.
_KNOWN_WEAK_SECRETS = {"changeme", "secret", "changethis", "jwt_secret", "password", "echocenter"}
MIN_JWT_SECRET_LENGTH = 32


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    environment: Environment = Environment.DEVELOPMENT
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    log_level: str = "INFO"

    data_dir: Path = Path("data")
    database_url: str = ""  # empty: SQLite file <data_dir>/echocenter.db
    # PostgreSQL only: the schema (search_path) EchoCenter's tables live in; empty = the server's default.
    database_schema: str = ""

    jwt_secret: str = ""  # empty in development: generated into <data_dir>/jwt.secret
    jwt_expire_minutes: int = Field(default=720, ge=1)
    # Fernet key for secrets at rest; empty: generated into <data_dir>/secrets.key on first start.
    secrets_key: str = ""

    initial_admin_user: str = ""
    initial_admin_pass: str = ""

    # Argon2id cost; below OWASP's floor (19 MiB, 2 passes) is refused except in the test environment.
    password_hash_memory_kib: int = Field(default=65_536, ge=1024)
    password_hash_time_cost: int = Field(default=3, ge=1)

    login_max_failures: int = Field(default=5, ge=1)
    login_lockout_seconds: int = Field(default=300, ge=1)
    # Login hardening: LOGIN_MAX_FAILURES counts per username *and* client address, this per client address
    # over every username; concurrent Argon2 hashes (each PASSWORD_HASH_MEMORY_KIB of memory) are bounded, and
    # a login that waits longer than LOGIN_HASH_WAIT_SECONDS for one gets 429.
    login_max_failures_per_client: int = Field(default=30, ge=1)
    login_max_concurrent_hashes: int = Field(default=2, ge=1, le=64)
    login_hash_wait_seconds: float = Field(default=3.0, gt=0, le=60)

    max_body_bytes: int = Field(default=1_048_576, ge=1024)

    feishu_base_url: str = "https://open.feishu.cn"
    feishu_http_timeout: float = Field(default=10.0, gt=0)
    feishu_ws_enabled: bool = True
    feishu_ws_url: str = ""  # long-connection discovery host; empty: FEISHU_BASE_URL
    feishu_ws_backoff_cap: float = Field(default=60.0, gt=0)
    # A card callback's answer must ride in the ack within Feishu's 3 s; past this, a toast goes instead.
    feishu_card_deadline: float = Field(default=2.5, gt=0, lt=3)
    feishu_callback_max_skew_seconds: int = Field(default=300, ge=1)

    # The Butler's LLM brain (an OpenAI-compatible chat API); all three set: LLM brain, else the rule brain.
    butler_base_url: str = ""
    butler_api_token: str = ""
    butler_model: str = ""
    butler_timeout: float = Field(default=30.0, gt=0)
    butler_history_turns: int = Field(default=20, ge=0, le=200)
    # The agent loop (LLM brain): tool calls per request, its time budget (approvals included), how much of
    # a command's output goes back to the model (the tail), the history's token budget (≈ chars/4), retries
    # of the model API on 429/5xx (backoff, Retry-After honoured), and the lease of an instance on a request.
    butler_max_steps: int = Field(default=5, ge=1, le=50)
    butler_request_budget_seconds: float = Field(default=900.0, gt=0)
    butler_tool_output_chars: int = Field(default=4000, ge=100)
    butler_history_tokens: int = Field(default=4000, ge=200)
    butler_max_retries: int = Field(default=2, ge=0, le=10)
    butler_loop_lease_seconds: float = Field(default=120.0, gt=0)
    # Streaming replies, images and files (issue 14).
    butler_vision: bool = False  # the model takes image inputs: images people send go to it
    butler_image_max_bytes: int = Field(default=5 * 1024 * 1024, ge=1)
    butler_file_max_bytes: int = Field(default=64 * 1024, ge=1)  # text files up to this go to the model
    streaming_first_update_seconds: float = Field(default=0.3, ge=0)  # shorter answers stay plain text
    streaming_min_interval_seconds: float = Field(default=0.15, gt=0)  # < 7 CardKit calls/s a card

    approval_ttl: int = Field(default=600, ge=5, description="seconds a command waits for a decision")
    approval_sweep_seconds: float = Field(default=5.0, gt=0)
    agent_command_timeout: float = Field(default=30.0, gt=0)
    # approvals-12: reminder DMs, escalation (0 = never) and how long a person's name is cached.
    approval_remind_after: float = Field(default=300.0, ge=0)
    approval_escalate_after: float = Field(default=450.0, ge=0)
    contact_name_ttl: float = Field(default=3600.0, ge=0)

    # The durable inbox: a message's lease (renewed while it is worked on), how often unfinished messages
    # whose lease ran out are re-driven (also at start-up), the wait before retrying a failed one, and the
    # attempts before it is failed for good.
    inbox_lease_seconds: float = Field(default=15.0, gt=0)
    inbox_sweep_seconds: float = Field(default=2.0, gt=0)
    inbox_retry_seconds: float = Field(default=1.0, ge=0)
    inbox_max_attempts: int = Field(default=5, ge=1)

    log_retention_days: int = Field(default=30, ge=1)
    log_retention_max_rows: int = Field(default=100_000, ge=100)
    # Seen message_ids are kept this long for de-duplication (Feishu redelivers within hours).
    dedup_retention_days: int = Field(default=7, ge=1)
    log_retention_sweep_seconds: int = Field(default=3600, ge=1)

    # sec-feishu: audit entries (connector changes, decisions) have their own cap, so noise never evicts them;
    # a rejected callback is logged once per connector and reason per interval, with a count of repeats.
    log_retention_max_audit_rows: int = Field(default=100_000, ge=100)
    feishu_callback_reject_log_seconds: float = Field(default=60.0, ge=0)
    # Several instances on one PostgreSQL (README "Running several instances").
    instance_id: str = Field(default="", max_length=64)  # empty: <hostname>-<pid>; unique per instance
    instance_heartbeat_seconds: float = Field(default=5.0, gt=0)
    # An instance silent this long is dead: its agents and connections drop out of the shared view.
    instance_timeout_seconds: float = Field(default=20.0, gt=0)
    # The slow catch-up of connector changes a listener missed (notifications reach everyone within 1 s).
    connector_reconcile_seconds: float = Field(default=30.0, gt=0)
    # Agent presence is written in batches (one statement per flush), never from a socket's read loop.
    presence_flush_seconds: float = Field(default=2.0, gt=0)
    # Outbox pacing at Feishu's send quotas (0 turns that pacing off: Lark, a raised quota, a benchmark) and
    # Prometheus metrics (quota-11).
    feishu_send_qps_per_app: float = Field(default=50, ge=0)
    feishu_send_per_minute_per_app: int = Field(default=1000, ge=0)
    feishu_send_qps_per_chat: float = Field(default=5, ge=0)
    feishu_patch_qps_per_message: float = Field(default=5, ge=0)
    metrics_enabled: bool = True
    metrics_token: str = ""  # when set, GET /metrics needs "Authorization: Bearer <token>"

    @model_validator(mode="after")
    def _refuse_weak_secrets_outside_development(self) -> Settings:
        if self.environment is not Environment.DEVELOPMENT:
            if not self.jwt_secret:
                raise ValueError(f"JWT_SECRET is required when ENVIRONMENT={self.environment.value}")
            if len(self.jwt_secret) < MIN_JWT_SECRET_LENGTH or self.jwt_secret.lower() in _KNOWN_WEAK_SECRETS:
                raise ValueError(
                    f"JWT_SECRET must be at least {MIN_JWT_SECRET_LENGTH} random characters "
                    "(try: python -c 'import secrets; print(secrets.token_urlsafe(48))')"
                )
        elif self.jwt_secret and len(self.jwt_secret) < MIN_JWT_SECRET_LENGTH:
            raise ValueError(f"JWT_SECRET must be at least {MIN_JWT_SECRET_LENGTH} characters")
        if self.environment is not Environment.TEST and (
            self.password_hash_memory_kib < 19_456 or self.password_hash_time_cost < 2
        ):
            raise ValueError("PASSWORD_HASH_MEMORY_KIB must be >= 19456 and PASSWORD_HASH_TIME_COST >= 2")
        # The first admin follows the rules of every other way to set a password (credential_rules.py).
        for variable, value, problem_of in (
            ("INITIAL_ADMIN_USER", self.initial_admin_user, username_problem),
            ("INITIAL_ADMIN_PASS", self.initial_admin_pass, password_problem),
        ):
            problem = problem_of(value) if value else None
            if problem is not None:
                raise ValueError(f"{variable} is refused: {problem}")
        return self

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'echocenter.db').as_posix()}"

    @property
    def resolved_instance_id(self) -> str:
        return self.instance_id or f"{socket.gethostname()[:40]}-{os.getpid()}"

    def resolve_generated_secrets(self) -> None:
        """Fill JWT_SECRET and SECRETS_KEY from files under data_dir, creating them on first start."""
        from cryptography.fernet import Fernet

        make_private_dir(self.data_dir)
        if not self.jwt_secret:
            self.jwt_secret = _read_or_create(self.data_dir / "jwt.secret", lambda: secrets.token_urlsafe(48))
        if not self.secrets_key:
            self.secrets_key = _read_or_create(
                self.data_dir / "secrets.key", lambda: Fernet.generate_key().decode()
            )


def _read_or_create(path: Path, make: Callable[[], str]) -> str:
    if path.exists():
        make_private(path)
        return path.read_text().strip()
    value = make()
    write_private(path, value + "\n")
    return value
