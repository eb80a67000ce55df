"""Images and files people send: fetched from the message's resources for this one answer, never stored.

``image`` content is ``{"image_key"}``, ``file`` content ``{"file_key","file_name"}``, and a ``post`` may
hold ``{"tag":"img","image_key"}`` elements. Each is downloaded with
``GET /open-apis/im/v1/messages/:message_id/resources/:key?type=image|file``, capped in size and checked:

- an image goes to the model as an image input (a ``data:`` URL) when it is vision-capable
  (``BUTLER_VISION``), and is recognised by its bytes, not only by the Content-Type;
- a file up to ``BUTLER_FILE_MAX_BYTES`` that is UTF-8 text goes to the model as text;
- anything else becomes a sentence saying what the Butler cannot read.

The bytes live in memory for the one brain call; the conversation keeps only what the person typed.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

from echocenter.contracts import InboundMessage
from echocenter.feishu.apps import FeishuApps
from echocenter.feishu.openapi import FeishuError, OpenApiClient
from echocenter.feishu.text import Resource, resources_of
from echocenter.feishu.untrusted import inert

_IMAGE_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


@dataclass
class Attachments:
    images: list[str] = field(default_factory=list)  # data: URLs
    texts: list[str] = field(default_factory=list)  # each file's text, introduced by its name
    problems: list[str] = field(default_factory=list)  # what could not be read, in words


def image_type(data: bytes) -> str | None:
    for magic, mime in _IMAGE_MAGIC:
        if data.startswith(magic):
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def _as_text(data: bytes) -> str | None:
    if b"\x00" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


class AttachmentReader:
    def __init__(
        self, clients: FeishuApps, *, vision: bool, image_max_bytes: int, file_max_bytes: int
    ) -> None:
        self._clients = clients
        self._vision = vision
        self._image_max = image_max_bytes
        self._file_max = file_max_bytes

    async def read(self, message: InboundMessage, *, vision: bool | None = None) -> Attachments:
        found = Attachments()
        resources = resources_of(message.message_type, message.content)
        if not resources:
            return found
        client: OpenApiClient | None = self._clients.openapi(message.connector_id)
        sees = self._vision if vision is None else vision
        for resource in resources:
            if client is None:
                found.problems.append("I cannot fetch what you sent right now.")
            elif resource.kind == "image":
                await self._image(client, message.message_id, resource, found, sees)
            else:
                await self._file(client, message.message_id, resource, found)
        return found

    async def _image(
        self, client: OpenApiClient, message_id: str, resource: Resource, found: Attachments, sees: bool
    ) -> None:
        if not sees:
            found.problems.append("I cannot look at images: my model is not set up to see them.")
            return
        try:
            data, content_type = await _fetch(client, message_id, resource, self._image_max)
        except FeishuError:
            found.problems.append("I could not fetch the image you sent.")
            return
        mime = image_type(data)
        if len(data) > self._image_max:
            found.problems.append(
                f"The image is larger than {self._image_max // 1024} KiB; I cannot read it."
            )
        elif mime is None or not content_type.startswith("image/"):
            found.problems.append("What you sent as an image is not one I can read (PNG, JPEG, GIF, WebP).")
        else:
            found.images.append(f"data:{mime};base64,{base64.b64encode(data).decode()}")

    async def _file(
        self, client: OpenApiClient, message_id: str, resource: Resource, found: Attachments
    ) -> None:
        name = inert(resource.name[:100])
        try:
            data, _ = await _fetch(client, message_id, resource, self._file_max)
        except FeishuError:
            found.problems.append(f"I could not fetch the file {name}.")
            return
        if len(data) > self._file_max:
            found.problems.append(
                f"The file {name} is larger than {self._file_max // 1024} KiB; I only read text files "
                "up to that size."
            )
            return
        text = _as_text(data)
        if text is None:
            found.problems.append(f"The file {name} is not a text file; I can only read text.")
            return
        found.texts.append(f"[file {resource.name[:100]}]\n{text}")


async def _fetch(client: OpenApiClient, message_id: str, resource: Resource, cap: int) -> tuple[bytes, str]:
    return await client.download(
        f"/open-apis/im/v1/messages/{message_id}/resources/{resource.key}",
        params={"type": resource.kind},
        max_bytes=cap,
    )
