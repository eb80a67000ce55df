"""Prometheus metrics: the instruments, and one-line hooks for the places that count.

Labels carry only bounded, non-secret values (transports, outcomes, filter reasons, Feishu codes, states),
never user text, ids or secrets. Gauges that describe stored state (outbox depth, approvals, long
connections) are read from the database when /metrics is scraped (metrics_api.py), so every instance reports
the same truth. The instruments live in a registry of their own, not the process-wide default.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

EVENTS_RECEIVED = Counter(
    "echocenter_events_received", "Feishu events received, by transport", ["transport"], registry=REGISTRY
)
EVENTS_ACKED = Counter(
    "echocenter_events_acked", "Long-connection frames acknowledged to Feishu", registry=REGISTRY
)
EVENTS_OUTCOME = Counter(
    "echocenter_events_outcome",
    "Message events by inbound pipeline outcome and filter reason",
    ["outcome", "reason"],
    registry=REGISTRY,
)
ACK_LATENCY = Histogram(
    "echocenter_ack_latency_seconds",
    "Frame received to ack sent (long connection)",
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
ANSWER_LATENCY = Histogram(
    "echocenter_answer_latency_seconds",
    "Message handed to the Butler to its reply accepted by Feishu",
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
BRAIN_LATENCY = Histogram(
    "echocenter_butler_brain_seconds",
    "Time the Butler's brain took to answer",
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
OUTBOX_SENT = Counter(
    "echocenter_outbox_sent", "Outbox rows accepted by Feishu, by kind", ["kind"], registry=REGISTRY
)
OUTBOX_FAILED = Counter(
    "echocenter_outbox_failed",
    "Outbox rows given up on a permanent error, by kind",
    ["kind"],
    registry=REGISTRY,
)
OUTBOX_SEND_LATENCY = Histogram(
    "echocenter_outbox_send_latency_seconds",
    "Outbox row written to accepted by Feishu (pacing and retries included)",
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
OUTBOX_DEPTH = Gauge("echocenter_outbox_depth", "Outbox rows waiting to be sent", registry=REGISTRY)
OUTBOX_OLDEST_AGE = Gauge(
    "echocenter_outbox_oldest_age_seconds",
    "Age of the oldest outbox row waiting (0: none)",
    registry=REGISTRY,
)
FEISHU_REFUSALS = Counter(
    "echocenter_feishu_refusals",
    "Feishu answers refusing a request for a quota (99991400, 230020), by code",
    ["code"],
    registry=REGISTRY,
)
FEISHU_ERRORS = Counter(
    "echocenter_feishu_errors",
    "Other failed Feishu Open API answers, by code (or http_<status> / timeout / network)",
    ["code"],
    registry=REGISTRY,
)
TOKEN_REFRESHES = Counter(
    "echocenter_token_refreshes", "Tenant access tokens requested from Feishu", registry=REGISTRY
)
APPROVALS = Gauge("echocenter_approvals", "Approvals by state", ["state"], registry=REGISTRY)
AGENTS_ONLINE = Gauge("echocenter_agents_online", "Agents connected to this instance", registry=REGISTRY)
LONG_CONNECTIONS = Gauge(
    "echocenter_long_connections", "Connectors by long-connection state", ["state"], registry=REGISTRY
)


# --- hooks (one line at the place that counts) -------------------------------------------------------------
def event_received(transport: str) -> None:
    EVENTS_RECEIVED.labels(transport).inc()


def event_acked(seconds: float) -> None:
    EVENTS_ACKED.inc()
    ACK_LATENCY.observe(seconds)


def event_outcome(outcome: str, reason: str | None) -> None:
    EVENTS_OUTCOME.labels(outcome, reason or "").inc()


def feishu_failure(
    code: int | None, *, refusal: bool, kind: str = "api", http_status: int | None = None
) -> None:
    if refusal:
        FEISHU_REFUSALS.labels(str(code)).inc()
    else:
        label = str(code) if code is not None else (f"http_{http_status}" if http_status else kind)
        FEISHU_ERRORS.labels(label).inc()
