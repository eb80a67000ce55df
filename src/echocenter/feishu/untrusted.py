"""Untrusted values (commands, names, agent output, model text) inside Feishu *text* messages.

A text message still reads a little markup: ``<at user_id="all"></at>`` (an @everyone), style tags such
as ``<b>``/``<i>``/``<u>``, ``**bold**``, ``~~strike~~`` and ``[label](url)`` links. Cards avoid the
question with plain_text elements (see cards.py); in a text message the characters that open markup are
swapped for their full-width look-alikes, so the words stay readable but nothing can form.
"""

from __future__ import annotations

_MARKUP = str.maketrans({"<": "＜", ">": "＞", "[": "［", "]": "］", "*": "＊", "~": "～"})


def inert(value: str) -> str:
    return value.translate(_MARKUP)
