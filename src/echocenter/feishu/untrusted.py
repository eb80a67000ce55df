"""Untrusted values (commands, names, agent output, model text) inside Feishu *text* messages.

A text message still reads a little markup: ``<at user_id="all"></at>`` (an @everyone), style tags such
as ``<b>``/``<i>``/``<u>``, ``**bold**``, ``~~strike~~`` and ``[label](url)`` links. Cards avoid the
question with plain_text elements (see approvals/cards.py); in a text message the characters that open
markup are swapped for their full-width look-alikes, so the words stay readable but nothing can form.
"""

from __future__ import annotations

_MARKUP = str.maketrans({"<": "＜", ">": "＞", "[": "［", "]": "］", "*": "＊", "~": "～"})


def inert(value: str) -> str:
    return value.translate(_MARKUP)


# Markdown elements of a streamed card: the model's formatting (bold, lists, code) is wanted, but a tag
# (``<at id=all>``, ``<font>``, ``<a>``) or a link/image with a label (``[docs](https://evil)``,
# ``![x](img_key)``) would let text the model repeats mention people or hide where a link goes. Brackets and
# angle brackets are swapped for look-alikes; a bare URL stays, since it shows where it leads.
_MARKDOWN_TAGS = str.maketrans({"<": "＜", ">": "＞", "[": "［", "]": "］"})


def inert_markdown(value: str) -> str:
    return value.translate(_MARKDOWN_TAGS)
