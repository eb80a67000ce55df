"""classify_error: the one rule that tells a retry from a fatal refusal, and says why."""

from __future__ import annotations

import pytest

from echocenter.feishu.longconn.protocol import (
    ConnectionDead,
    DiscoveryRefused,
    LongConnError,
    classify_error,
    handshake_refused,
)


@pytest.mark.parametrize(
    ("error", "fatal"),
    [
        (1, False),  # system busy
        (1000040343, False),  # internal error
        (1000040344, True),  # no credential
        (10014, True),  # app secret invalid
        (DiscoveryRefused(1, "system busy"), False),
        (DiscoveryRefused(1000040344, "no credential"), True),
    ],
)
def test_discovery_codes(error: int | DiscoveryRefused, fatal: bool) -> None:
    assert classify_error(error).fatal is fatal


@pytest.mark.parametrize(
    ("status", "headers", "fatal"),
    [
        (401, {"handshake-status": "514", "handshake-autherrcode": "1000040350"}, True),  # too many
        (403, {"handshake-status": "403", "handshake-msg": "forbidden"}, True),
        (401, {"handshake-status": "514", "handshake-msg": "ticket expired"}, False),
        (502, {}, False),
        (401, {"handshake-status": "not a number", "handshake-autherrcode": "x"}, False),
    ],
)
def test_handshake_refusals(status: int, headers: dict[str, str], fatal: bool) -> None:
    verdict = classify_error(handshake_refused(status, headers))
    assert verdict.fatal is fatal and verdict.why.startswith("handshake refused")


def test_the_reason_names_feishus_words() -> None:
    verdict = classify_error(
        handshake_refused(
            401,
            {
                "handshake-status": "514",
                "handshake-msg": "exceed connection limit",
                "handshake-autherrcode": "1000040350",
            },
        )
    )
    assert verdict.why == "handshake refused: exceed connection limit (auth error 1000040350) (status 514)"
    assert (
        classify_error(DiscoveryRefused(1000040344, "")).why
        == "discovery refused: no message (code 1000040344)"
    )


@pytest.mark.parametrize(
    ("error", "why"),
    [
        (None, "connection closed by the server"),
        (ConnectionDead("nothing received for 245 s"), "nothing received for 245 s"),
        (LongConnError("discovery timed out after 10 s"), "discovery timed out after 10 s"),
        (TimeoutError(), "TimeoutError"),
        (OSError("Connection refused"), "OSError: Connection refused"),
        (RuntimeError("a bug we did not foresee"), "RuntimeError: a bug we did not foresee"),
    ],
)
def test_everything_else_is_retried(error: BaseException | None, why: str) -> None:
    verdict = classify_error(error)
    assert not verdict.fatal and verdict.why == why
