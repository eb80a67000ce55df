"""A database error in the middle of a delivery does not leave the row (and with it its whole lane, every
later reply in the chat) under the sender's own lease until that runs out: the sender tries it again as soon
as the database answers."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy.exc import OperationalError

from echocenter.db.models import FeishuConnector
from echocenter.feishu import outbox as outbox_module
from echocenter.feishu.outbox import NewRow, Outbox, PacingLimits, chat_lane, text_content
from tests.support.databases import Database, migrated_sessions


class _Client:
    def __init__(self) -> None:
        self.uuids: list[str] = []

    async def call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        self.uuids.append(kwargs["json"]["uuid"])
        return {"message_id": f"om_{len(self.uuids)}"}


class _Clients:
    def __init__(self, client: _Client) -> None:
        self.client = client

    def openapi(self, connector_id: int) -> Any:
        return self.client


def _row(connector_id: int, uuid: str) -> NewRow:
    return NewRow(
        connector_id=connector_id,
        kind="text",
        lane=chat_lane("oc_ops"),
        content=text_content(uuid),
        uuid=uuid,
        chat_id="oc_ops",
        target_message_id=f"om_user_{uuid}",
        msg_type="text",
    )


async def test_a_row_whose_delivery_broke_on_the_database_is_sent_without_waiting_for_its_lease(
    database: Database,
) -> None:
    async with migrated_sessions(database) as sessions:
        async with sessions() as session:
            connector = FeishuConnector(connector_name="c")
            session.add(connector)
            await session.commit()
        client = _Client()
        outbox = Outbox(sessions, _Clients(client), limits=PacingLimits(), dialect=database.backend)
        real_reserve = outbox._pacer.reserve
        broken = {"left": 2}  # the database is away for the first two deliveries

        async def reserve(quotas: Any) -> float:
            if broken["left"]:
                broken["left"] -= 1
                raise OperationalError("SELECT 1", {}, ConnectionResetError("connection reset by peer"))
            return await real_reserve(quotas)

        outbox._pacer.reserve = reserve  # type: ignore[method-assign]
        ids = await outbox.enqueue([_row(connector.id, "first"), _row(connector.id, "second")])
        outbox.start()
        try:
            # Far sooner than the lease (LEASE_SECONDS): the lane did not wait for it to run out.
            sent = await asyncio.wait_for(outbox.wait_sent(ids), outbox_module.LEASE_SECONDS / 6)
        finally:
            await outbox.stop()
    assert sent == ["om_1", "om_2"]
    assert client.uuids == ["first", "second"]  # in order, each once
