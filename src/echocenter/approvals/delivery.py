"""Putting an approval's card in front of people and keeping every copy current: the chat that asked, a DM
to each approver (``receive_id_type=open_id``), reminders; each copy is remembered (approvals/copies.py)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import weakref
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from echocenter.approvals import copies, store, votes
from echocenter.approvals.cards import approval_card
from echocenter.approvals.policy import approvers_for, delivery_of
from echocenter.db.models import Approval, FeishuConnector
from echocenter.feishu.outbound import Outbound, OutboundError
from echocenter.feishu.untrusted import inert

log = logging.getLogger(__name__)


def chat_card_uuid(approval: Approval) -> str:
    return f"approval-card-{approval.request_id}"[:50]


class CardDelivery:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], outbound: Outbound) -> None:
        self._sessions = sessions
        self._outbound = outbound
        # One refresh at a time per approval: a "running" update must never land after the "done" one.
        self._refreshing: weakref.WeakValueDictionary[int, asyncio.Lock] = weakref.WeakValueDictionary()

    async def card(self, approval: Approval) -> dict[str, Any]:
        async with self._sessions() as session:
            cast = await votes.for_approval(session, approval.id)
        return approval_card(approval, cast)

    async def _remember(self, approval: Approval, message_id: str, audience: str) -> None:
        async with self._sessions() as session:
            await copies.add(session, approval_id=approval.id, message_id=message_id, audience=audience)

    async def to_chat(self, approval: Approval, *, reply_to: str | None, in_thread: bool = False) -> str:
        """Raises OutboundError (logged as ws_outbound by Outbound)."""
        assert approval.connector_id is not None
        card_id = await self._outbound.send_card(
            approval.connector_id,
            chat_id=approval.chat_id,
            card=await self.card(approval),
            reply_to=reply_to,
            uuid=chat_card_uuid(approval),
            in_thread=in_thread,  # asked in a thread: the card goes to that thread
        )
        await self._remember(approval, card_id, f"chat:{approval.chat_id}")
        return card_id

    async def recover_chat_card(self, approval: Approval) -> None:
        """The chat's card went out from the outbox after its requester was gone (a restart): find its id by
        the card's uuid and remember it, so clicks on it count and updates reach it."""
        if approval.card_message_id or approval.connector_id is None:
            return
        card_id = await self._outbound.sent_message_id(approval.connector_id, chat_card_uuid(approval))
        if not card_id:
            return
        async with self._sessions() as session:
            await store.set_card(session, approval.id, card_id)
            await copies.add(
                session, approval_id=approval.id, message_id=card_id, audience=f"chat:{approval.chat_id}"
            )
        approval.card_message_id = card_id

    async def to_person(self, approval: Approval, open_id: str, *, purpose: str) -> str | None:
        """A DM with the card; None when it could not be sent (logged by Outbound)."""
        assert approval.connector_id is not None
        # One idempotency key per approval, person and purpose: a retry or another instance sends nothing new.
        person = hashlib.sha256(open_id.encode()).hexdigest()[:16]
        key = f"{approval.request_id[:20]}-{purpose[:8]}-{person}"
        try:
            card_id = await self._outbound.send_card(
                approval.connector_id,
                chat_id=open_id,
                card=await self.card(approval),
                uuid=key,
                receive_id_type="open_id",
            )
        except OutboundError:
            return None
        await self._remember(approval, card_id, f"dm:{open_id}")
        return card_id

    async def first_delivery(
        self,
        approval: Approval,
        connector: FeishuConnector | None,
        *,
        reply_to: str | None,
        in_thread: bool = False,
    ) -> list[str]:
        """The card where the connector says (chat, approvers' DMs, both); the ids of what was sent."""
        mode = delivery_of(connector)
        sent: list[str] = []
        if mode in ("chat", "both"):
            sent.append(await self.to_chat(approval, reply_to=reply_to, in_thread=in_thread))
        if mode in ("approvers", "both") and connector is not None:
            for person in approvers_for(connector, approval):
                card_id = await self.to_person(approval, person, purpose="ask")
                if card_id:
                    sent.append(card_id)
            if mode == "approvers" and sent:
                await self._notice(approval, reply_to=reply_to, people=len(sent))
        return sent

    async def _notice(self, approval: Approval, *, reply_to: str | None, people: int) -> None:
        assert approval.connector_id is not None
        text = (
            f"Approval #{approval.id} for `{inert(approval.command)}` on {inert(approval.agent_name)} "
            f"went to {people} approver(s) by direct message."
        )
        try:
            await self._outbound.send_text(
                approval.connector_id,
                chat_id=approval.chat_id,
                text=text,
                reply_to=reply_to,
                uuid=f"approval-notice-{approval.request_id}",
            )
        except OutboundError:
            log.warning("approval_notice_not_sent approval_id=%s", approval.id)

    async def refresh_all(self, approval: Approval, *, skip: str | None = None) -> None:
        """Every copy of the card shows the approval as it now stands (``skip``: the one a click answers).
        Refreshes of one approval run one after the other, each rendering the latest stored state."""
        if approval.connector_id is None:
            return
        lock = self._refreshing.get(approval.id)
        if lock is None:
            lock = self._refreshing[approval.id] = asyncio.Lock()
        async with lock:
            async with self._sessions() as session:
                current = await store.get(session, approval.id)
            await self.recover_chat_card(current)
            async with self._sessions() as session:
                card_ids = await copies.message_ids(session, current)
            card = await self.card(current)
            for card_id in card_ids:
                if card_id == skip:
                    continue
                try:
                    await self._outbound.update_card(approval.connector_id, message_id=card_id, card=card)
                except OutboundError:
                    log.warning(
                        "approval_card_not_updated approval_id=%s message_id=%s", approval.id, card_id
                    )
