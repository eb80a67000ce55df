from __future__ import annotations

import pytest
from pydantic import ValidationError

from echocenter.settings import Environment, Settings


def _settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


def test_production_requires_a_jwt_secret() -> None:
    with pytest.raises(ValidationError, match="JWT_SECRET is required"):
        _settings(environment=Environment.PRODUCTION)


@pytest.mark.parametrize("weak", ["changeme", "short-but-not-empty", "x" * 31])
def test_production_refuses_weak_jwt_secrets(weak: str) -> None:
    with pytest.raises(ValidationError, match="JWT_SECRET must be"):
        _settings(environment=Environment.PRODUCTION, jwt_secret=weak)


def test_production_accepts_a_strong_jwt_secret() -> None:
    settings = _settings(environment=Environment.PRODUCTION, jwt_secret="k" * 48)
    assert settings.jwt_secret == "k" * 48


def test_development_generates_and_keeps_secrets(tmp_path: object) -> None:
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    first = _settings(data_dir=tmp_path)
    first.resolve_generated_secrets()
    second = _settings(data_dir=tmp_path)
    second.resolve_generated_secrets()
    assert len(first.jwt_secret) >= 32
    assert (first.jwt_secret, first.secrets_key) == (second.jwt_secret, second.secrets_key)
    assert oct((tmp_path / "secrets.key").stat().st_mode & 0o777) == "0o600"


def test_sqlite_under_data_dir_is_the_default_database(tmp_path: object) -> None:
    settings = _settings(data_dir="somewhere")
    assert settings.resolved_database_url == "sqlite+aiosqlite:///somewhere/echocenter.db"


def test_the_test_environment_also_requires_a_jwt_secret() -> None:
    with pytest.raises(ValidationError, match="JWT_SECRET is required when ENVIRONMENT=test"):
        _settings(environment=Environment.TEST)


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ({"initial_admin_pass": "a"}, "PASS is refused: the password needs at least 8 characters"),
        ({"initial_admin_pass": " " * 10}, "PASS is refused: the password cannot be only spaces"),
        ({"initial_admin_user": "ad min"}, "USER is refused: the username may contain only"),
    ],
)
def test_the_first_admin_follows_the_credential_rules(values: dict[str, str], problem: str) -> None:
    with pytest.raises(ValidationError, match=f"INITIAL_ADMIN_{problem}"):
        _settings(**{"initial_admin_user": "admin", "initial_admin_pass": "a-good-password", **values})
