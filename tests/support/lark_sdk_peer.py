"""Runs the official lark-oapi WS client against the emulator (in its own process: the SDK owns its loop).

Usage: python lark_sdk_peer.py DOMAIN APP_ID APP_SECRET. Prints one JSON line per event it handles.
"""

from __future__ import annotations

import json
import sys

import lark_oapi as lark
from lark_oapi.api.im.v1 import P2ImMessageReceiveV1
from lark_oapi.event.callback.model.p2_card_action_trigger import (
    P2CardActionTrigger,
    P2CardActionTriggerResponse,
)


def on_message(data: P2ImMessageReceiveV1) -> None:
    message = data.event.message
    print(
        "PEER "
        + json.dumps({"kind": "message", "message_id": message.message_id, "content": message.content}),
        flush=True,
    )


def on_card(data: P2CardActionTrigger) -> P2CardActionTriggerResponse:
    print(
        "PEER "
        + json.dumps(
            {"kind": "card", "value": data.event.action.value, "operator": data.event.operator.open_id}
        ),
        flush=True,
    )
    return P2CardActionTriggerResponse(
        {
            "toast": {"type": "success", "content": "Approved by the SDK"},
            "card": {
                "type": "raw",
                "data": {
                    "header": {"title": {"tag": "plain_text", "content": "Approved"}},
                    "elements": [{"tag": "markdown", "content": "done"}],
                },
            },
        }
    )


def main() -> None:
    domain, app_id, app_secret = sys.argv[1:4]
    handler = (
        lark.EventDispatcherHandler.builder("", "")
        .register_p2_im_message_receive_v1(on_message)
        .register_p2_card_action_trigger(on_card)
        .build()
    )
    client = lark.ws.Client(
        app_id, app_secret, event_handler=handler, domain=domain, log_level=lark.LogLevel.INFO
    )
    print("PEER " + json.dumps({"kind": "starting"}), flush=True)
    client.start()


if __name__ == "__main__":
    main()
