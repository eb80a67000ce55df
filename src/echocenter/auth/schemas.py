from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, computed_field

from echocenter.credential_rules import (
    MAX_PASSWORD_LENGTH,
    MAX_USERNAME_LENGTH,
    MIN_PASSWORD_LENGTH,
    USERNAME_PATTERN,
)
from echocenter.db.models import Role


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: StrictStr = Field(min_length=1, max_length=64)
    password: StrictStr = Field(min_length=1, max_length=256)


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    username: str
    role: Role
    is_active: bool
    created_at: datetime

    @computed_field  # type: ignore[prop-decorator]
    @property
    def disabled(self) -> bool:
        return not self.is_active


class LoginResponse(BaseModel):
    token: str
    token_type: str = "bearer"
    expires_in: int = Field(description="seconds")
    user: UserOut


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: StrictStr = Field(min_length=1, max_length=MAX_USERNAME_LENGTH, pattern=USERNAME_PATTERN)
    password: StrictStr = Field(min_length=MIN_PASSWORD_LENGTH, max_length=MAX_PASSWORD_LENGTH)
    role: Role = Role.MEMBER


class UserUpdate(BaseModel):
    """PATCH /api/users/:id. Disabling or a new password also revokes the user's tokens."""

    model_config = ConfigDict(extra="forbid")
    disabled: StrictBool | None = None
    role: Role | None = None
    password: StrictStr | None = Field(
        default=None, min_length=MIN_PASSWORD_LENGTH, max_length=MAX_PASSWORD_LENGTH
    )
