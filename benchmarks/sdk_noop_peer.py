"""The official lark-oapi WS client with a no-op message handler: the baseline benchmarks/inbound.py compares
against. Usage: python sdk_noop_peer.py DOMAIN APP_ID APP_SECRET"""

from __future__ import annotations

import sys

import lark_oapi as lark


def main() -> None:
    domain, app_id, app_secret = sys.argv[1:4]
    handler = (
        lark.EventDispatcherHandler.builder("", "").register_p2_im_message_receive_v1(lambda _: None).build()
    )
    lark.ws.Client(
        app_id, app_secret, event_handler=handler, domain=domain, log_level=lark.LogLevel.ERROR
    ).start()


if __name__ == "__main__":
    main()
