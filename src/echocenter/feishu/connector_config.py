"""What the Feishu layer reads of a stored connector: the row, and its secrets decrypted.

The connectors package (the admin side, above this layer) writes connectors; the bridge, the HTTP callback
and the doctor only read them, through here, so the Feishu layer never imports the admin side.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from echocenter.db.models import FeishuConnector
from echocenter.errors import NotFound
from echocenter.secretbox import SecretBox


def read_secret(box: SecretBox, connector: FeishuConnector, name: str) -> str | None:
    """The decrypted ``<name>_enc`` column (app_secret, verification_token, encrypt_key), or None."""
    token: str | None = getattr(connector, f"{name}_enc")
    return box.decrypt(token) if token is not None else None


async def list_connectors(session: AsyncSession) -> list[FeishuConnector]:
    return list(await session.scalars(select(FeishuConnector).order_by(FeishuConnector.id)))


async def get_connector(session: AsyncSession, connector_id: int) -> FeishuConnector:
    connector = await session.get(FeishuConnector, connector_id)
    if connector is None:
        raise NotFound(f"connector {connector_id} does not exist")
    return connector
