"""In-place edits of a request body: every byte outside the edited spans stays as it was."""

from __future__ import annotations

from collections.abc import Iterable

import orjson

from sluice.base.json_spans import (
    DuplicateMember,
    Member,
    array_elements,
    as_text,
    cut_spans,
    element_cuts,
    find_member,
    find_unique_member,
    member_cut,
    object_members,
)
from sluice.errors import InvalidRequest


def splice_model(body: bytes, model: str) -> bytes:
    """Replace the top-level ``model`` value (the alias the client sent) with ``model``."""
    member = find_member(as_text(body), 0, "model")
    if member is None:
        raise ValueError("no top-level model")
    return body[: member.value_start] + orjson.dumps(model) + body[member.value_end :]


def _element_name(body: bytes, span: tuple[int, int]) -> str | None:
    try:
        element = orjson.loads(body[span[0] : span[1]])
    except orjson.JSONDecodeError:
        return None
    name = element.get("name") if isinstance(element, dict) else None
    return name if isinstance(name, str) else None


def strip_named(body: bytes, member: str, denied: set[str]) -> bytes:
    """Cut the elements whose ``name`` is in ``denied`` out of the top-level array ``member``
    (``tools[]``, ``mcp_servers[]``)."""
    if not denied:
        return body
    text = as_text(body)
    array = find_member(text, 0, member)
    if array is None or text[array.value_start] != "[":
        return body
    elements = array_elements(text, array.value_start)
    drop = {i for i, span in enumerate(elements) if _element_name(body, span) in denied}
    return cut_spans(body, element_cuts(elements, drop)) if drop else body


def _cache_control_cut(text: str, start: int) -> tuple[int, int] | None:
    if text[start] != "{":
        return None
    members = object_members(text, start)
    found = [index for index, (key, _) in enumerate(members) if key == "cache_control"]
    if len(found) > 1:
        raise DuplicateMember("cache_control")
    return member_cut(text, members, found[0]) if found else None


def _blocks(text: str, member: Member | None) -> Iterable[int]:
    """Starts of the objects in an array member (nothing when it is a string or absent)."""
    if member is None or text[member.value_start] != "[":
        return []
    return [s for s, _ in array_elements(text, member.value_start)]


def strip_cache_control(body: bytes) -> tuple[bytes, int]:
    """Remove every ``cache_control`` from ``system[]``, ``messages[].content[]``, ``tools[]``
    and the top level. Returns the new body and how many markers were removed. A repeated
    ``content`` or ``cache_control`` is refused: one copy would stay behind."""
    try:
        return _strip_cache_control(body)
    except DuplicateMember as exc:
        raise InvalidRequest(
            f"`{exc.key}` appears more than once in one object of the request body; "
            "send each member once.",
            param=exc.key,
        ) from exc


def _strip_cache_control(body: bytes) -> tuple[bytes, int]:
    text = as_text(body)
    top = object_members(text, 0)
    members = dict(top)
    cuts: list[tuple[int, int]] = []
    for index, (key, _) in enumerate(top):
        if key == "cache_control":
            cuts.append(member_cut(text, top, index))
    starts = [*_blocks(text, members.get("system")), *_blocks(text, members.get("tools"))]
    for message_start in _blocks(text, members.get("messages")):
        if text[message_start] == "{":
            starts.extend(_blocks(text, find_unique_member(text, message_start, "content")))
    for start in starts:
        cut = _cache_control_cut(text, start)
        if cut is not None:
            cuts.append(cut)
    return (cut_spans(body, cuts), len(cuts)) if cuts else (body, 0)
