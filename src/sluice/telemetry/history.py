"""Reading a Claude Code history: the few fields of a message that turns need, and which
message opened the request's turn (the latest user message with user text).

A long turn (an agent's tool loop runs to hundreds of messages) would be read whole by every
request of it. So a gateway process remembers, per conversation, where the turn of its latest
request opened (``Opening``): the next request reads only the messages it adds, from the old
last one (whose ``cache_control`` marker has moved), and takes the remembered opening when
the messages between it and them have the lengths they had. Anything else (a shorter
history, another length, an opening that no longer opens) reads the history whole, as a
process that never saw the conversation does. A rewrite in the middle of a history that
keeps every message's length, and adds user text, is the one change this does not see;
Claude Code never makes one (it appends, moves the marker, or compacts to a new history).

Pure functions only: no IO, no clock.
"""

from __future__ import annotations

import hashlib
import re
from array import array
from dataclasses import dataclass
from typing import Any

import msgspec
import orjson

_REMINDER = "<system-reminder>"


@dataclass(frozen=True, slots=True)
class Opening:
    """Where the turn of a conversation's latest request opened, kept for its next request."""

    index: int  # of the opening message
    count: int  # the request's messages
    between: bytes  # a digest of the lengths of the messages after the opening, but the last


@dataclass(slots=True)
class Recall:
    """A conversation's remembered opening going into ``detect_turn``, and this request's
    coming out (``telemetry.service`` keeps them, per gateway process)."""

    known: Opening | None = None
    learnt: Opening | None = None


class Block(msgspec.Struct):
    """The few fields of a content block that turns need; the rest is skipped unparsed."""

    type: str = ""
    text: Any = None
    id: Any = None
    name: Any = None
    input: msgspec.Raw = msgspec.Raw(b"null")
    tool_use_id: Any = None
    is_error: Any = None
    content: msgspec.Raw = msgspec.Raw(b"null")
    source: msgspec.Raw = msgspec.Raw(b"null")  # images and documents


class Message(msgspec.Struct):
    role: str = ""
    content: str | list[Block] = ""


class _Role(msgspec.Struct):
    role: str = ""


_MESSAGE = msgspec.json.Decoder(Message)
_ROLE = msgspec.json.Decoder(_Role)  # skips the content unbuilt: most messages stop here
# cache_control markers move between requests; a content hash must not see them. JSON strings
# escape their quotes, so this cannot match inside a text.
_CACHE_CONTROL = re.compile(
    rb',\s*"cache_control"\s*:\s*\{[^{}]*\}|"cache_control"\s*:\s*\{[^{}]*\}\s*,?'
)


def message_at(item: msgspec.Raw, role: str | None = None) -> Message:
    """The message, or an empty one when it is not a message object or not of ``role``."""
    try:
        if role is not None and _ROLE.decode(item).role != role:
            return Message()
        return _MESSAGE.decode(item)
    except msgspec.DecodeError:
        return Message()


def normalized_content(message: Message) -> bytes:
    """The message's content in one canonical byte form: a string is one text block; a block is
    its type and its text, or its other parts as compact JSON with ``cache_control`` removed."""
    content = message.content
    if isinstance(content, str):
        return b"text\x1f" + content.encode()
    parts: list[bytes] = []
    for block in content:
        if block.type == "text":
            parts.append(b"text\x1f" + str(block.text or "").encode())
            continue
        fields = (block.id, block.name, block.tool_use_id, block.is_error)
        raw = b"\x1f".join(
            (bytes(block.input), bytes(block.content), bytes(block.source), orjson.dumps(fields))
        )
        if b'"cache_control"' in raw:
            raw = _CACHE_CONTROL.sub(b"", raw)
        parts.append(block.type.encode() + b"\x1f" + raw)
    return b"\x1e".join(parts)


def has_user_text(message: Message) -> bool:
    """User text, an image or a document; not tool results, nor the ``<system-reminder>`` text
    blocks Claude Code attaches to tool results."""
    content = message.content
    if isinstance(content, str):
        return not content.lstrip().startswith(_REMINDER)
    for block in content:
        if block.type == "text":
            if not str(block.text or "").lstrip().startswith(_REMINDER):
                return True
        elif block.type != "tool_result":
            return True
    return False


def find_tool_use(
    items: list[msgspec.Raw], before: int, wanted: set[str]
) -> dict[str, tuple[int, str, bytes]]:
    """tool_use id -> (index of the assistant message holding it, tool name, input JSON)."""
    found: dict[str, tuple[int, str, bytes]] = {}
    for index in range(before - 1, -1, -1):
        message = message_at(items[index], "assistant")
        if message.role != "assistant" or isinstance(message.content, str):
            continue
        for block in message.content:
            if block.id in wanted:
                found[block.id] = (index, str(block.name or ""), bytes(block.input))
        if len(found) == len(wanted):
            break
    return found


def find_opening(
    items: list[msgspec.Raw], recall: Recall | None = None
) -> tuple[int, Message | None, Message | None, int]:
    """(index of the message that opened the turn, that message as decoded here, the last user
    message, its index). With no user text in the history (truncated), the first message
    opened it (not decoded here: None). ``recall``: the conversation's previous opening, which
    spares reading what that request had (see the module's notes); this one's is left in it."""
    if recall is None:
        found = _walk(items, len(items), 0, None, -1)
        return found if found[0] >= 0 else (0, *found[1:])
    known = recall.known
    stop = _stop(items, known)
    found = _walk(items, len(items), stop, None, -1)
    if found[0] < 0 and known is not None and stop > 0:
        found = _resume(items, known, stop, found[2], found[3])
    at, count = max(found[0], 0), len(items)
    recall.learnt = Opening(at, count, _between(items, at + 1, count - 1))
    return found if found[0] >= 0 else (0, *found[1:])


def _stop(items: list[msgspec.Raw], known: Opening | None) -> int:
    """Where the walk back may stop: the previous request's last message (its cache marker
    has moved since), when that request's opening had messages after it."""
    if known is not None and known.index < known.count - 1 and known.count <= len(items):
        return known.count - 1
    return 0


def _resume(
    items: list[msgspec.Raw],
    known: Opening,
    stop: int,
    last_user: Message | None,
    last_user_index: int,
) -> tuple[int, Message | None, Message | None, int]:
    """No user text from ``stop`` (the previous request's last message) on: its opening still
    opens the turn when the messages between have the lengths they had and it still has user
    text; else the walk goes on back."""
    if last_user is not None and _between(items, known.index + 1, stop) == known.between:
        message = message_at(items[known.index], "user")
        if message.role == "user" and has_user_text(message):
            return known.index, message, last_user, last_user_index
    return _walk(items, stop, 0, last_user, last_user_index)


def _walk(
    items: list[msgspec.Raw],
    start: int,
    stop: int,
    last_user: Message | None,
    last_user_index: int,
) -> tuple[int, Message | None, Message | None, int]:
    """``find_opening``'s walk back over ``items[stop:start]``: the opening's index is -1 when
    none of them has user text."""
    for index in range(start - 1, stop - 1, -1):
        message = message_at(items[index], "user")
        if message.role != "user":
            continue
        if last_user is None:
            last_user, last_user_index = message, index
        if has_user_text(message):
            return index, message, last_user, last_user_index
    return -1, None, last_user, last_user_index


def _between(items: list[msgspec.Raw], start: int, end: int) -> bytes:
    lengths = array("Q", map(len, items[start:end]))
    return hashlib.blake2b(lengths.tobytes(), digest_size=16).digest()
