from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, StrictStr

from echocenter.auth.passwords import MIN_PASSWORD_LENGTH
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


class LoginResponse(BaseModel):
    token: str
    token_type: str = "bearer"
    expires_in: int = Field(description="seconds")
    user: UserOut


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: StrictStr = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")
    password: StrictStr = Field(min_length=MIN_PASSWORD_LENGTH, max_length=256)
    role: Role = Role.MEMBER
