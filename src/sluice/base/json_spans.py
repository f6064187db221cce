"""Locate JSON members and array elements by byte offset, so a body can be edited in place.

The gateway never re-serializes a relayed body: an alias is spliced into ``model``, a denied
tool is cut out of ``tools``, a ``cache_control`` is cut out of a block, and every other byte
stays where it was. Strings are skipped with the C scanner from the standard library, so only
structural characters cost a Python step. Callers use this for opt-in edits, not per request.
"""

from __future__ import annotations

import json.decoder
import re
from collections.abc import Iterator
from typing import NamedTuple

import msgspec

_STRUCT_S = re.compile(r'["{}\[\]]')
_SCALAR = re.compile(r"-?[0-9][0-9eE.+-]*|true|false|null")
_scanstring = json.decoder.scanstring  # type: ignore[attr-defined]


class SpanError(ValueError):
    """The bytes are not the JSON shape the caller expected."""


def as_text(body: bytes) -> str:
    """A latin-1 view: one char per byte, so str offsets are byte offsets. Quotes, escapes
    and structure are ASCII, so scanning it finds the same structure as scanning UTF-8."""
    return body.decode("latin-1")


def end_of_value(text: str, pos: int) -> int:
    """Index after the JSON value starting at ``pos`` in ``text`` (a latin-1 view)."""
    pos = _skip_ws_s(text, pos)
    first = text[pos]
    if first == '"':
        return int(_scanstring(text, pos + 1, False)[1])
    if first not in "{[":
        match = _SCALAR.match(text, pos)
        if match is None:
            raise SpanError(f"unexpected byte at {pos}")
        return match.end()
    depth = 0
    i = pos
    while True:
        match = _STRUCT_S.search(text, i)
        if match is None:
            raise SpanError("unterminated container")
        ch = match.group()
        i = match.end()
        if ch == '"':
            i = int(_scanstring(text, i, False)[1])
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
            if depth == 0:
                return i


def _skip_ws_s(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


class Member(msgspec.Struct, frozen=True):  # a Struct: built in C, per member scanned
    key_start: int  # the opening quote of the key
    value_start: int
    value_end: int


def iter_members(text: str, start: int) -> Iterator[tuple[str, Member]]:
    """Members of the object whose ``{`` is at ``start``, in order, scanned lazily (stop early
    to find a leading key such as ``model`` without scanning the rest of the body)."""
    pos = _skip_ws_s(text, start)
    if text[pos] != "{":
        raise SpanError("not an object")
    pos = _skip_ws_s(text, pos + 1)
    if text[pos] == "}":
        return
    while True:
        if text[pos] != '"':
            raise SpanError(f"expected a key at {pos}")
        key, after = _scanstring(text, pos + 1, False)
        colon = _skip_ws_s(text, after)
        if text[colon] != ":":
            raise SpanError(f"expected ':' at {colon}")
        value_start = _skip_ws_s(text, colon + 1)
        value_end = end_of_value(text, value_start)
        yield key, Member(pos, value_start, value_end)
        pos = _skip_ws_s(text, value_end)
        if text[pos] == "}":
            return
        if text[pos] != ",":
            raise SpanError(f"expected ',' at {pos}")
        pos = _skip_ws_s(text, pos + 1)


def object_members(text: str, start: int) -> list[tuple[str, Member]]:
    return list(iter_members(text, start))


def find_member(text: str, start: int, key: str) -> Member | None:
    for name, member in iter_members(text, start):
        if name == key:
            return member
    return None


def array_elements(text: str, start: int) -> list[tuple[int, int]]:
    """(start, end) of each element of the array whose ``[`` is at ``start``."""
    pos = _skip_ws_s(text, start)
    if text[pos] != "[":
        raise SpanError("not an array")
    out: list[tuple[int, int]] = []
    pos = _skip_ws_s(text, pos + 1)
    if text[pos] == "]":
        return out
    while True:
        end = end_of_value(text, pos)
        out.append((pos, end))
        pos = _skip_ws_s(text, end)
        if text[pos] == "]":
            return out
        if text[pos] != ",":
            raise SpanError(f"expected ',' at {pos}")
        pos = _skip_ws_s(text, pos + 1)


def cut_spans(body: bytes, spans: list[tuple[int, int]]) -> bytes:
    """Remove the given (start, end) ranges; ranges must not overlap."""
    out = []
    last = 0
    for start, end in sorted(spans):
        out.append(body[last:start])
        last = end
    out.append(body[last:])
    return b"".join(out)


def member_cut(text: str, members: list[tuple[str, Member]], index: int) -> tuple[int, int]:
    """The span to delete member ``index`` together with one separating comma."""
    member = members[index][1]
    if index + 1 < len(members):
        return member.key_start, members[index + 1][1].key_start
    if index > 0:
        prev_end = members[index - 1][1].value_end
        return prev_end, member.value_end
    return member.key_start, member.value_end


def element_cuts(elements: list[tuple[int, int]], drop: set[int]) -> list[tuple[int, int]]:
    """Spans that delete the elements at indexes ``drop`` with their separators, keeping every
    other byte (kept elements and the separators between them) as it was."""
    cuts: list[tuple[int, int]] = []
    i = 0
    n = len(elements)
    while i < n:
        if i not in drop:
            i += 1
            continue
        first = i
        while i < n and i in drop:
            i += 1
        last = i - 1
        if i < n:  # a kept element follows: cut up to where it starts
            cuts.append((elements[first][0], elements[i][0]))
        elif first > 0:  # the run ends the array: cut from the end of the kept one before
            cuts.append((elements[first - 1][1], elements[last][1]))
        else:  # everything goes
            cuts.append((elements[0][0], elements[last][1]))
    return cuts


_RAW_OBJECT = msgspec.json.Decoder(dict[str, msgspec.Raw])
_RAW_ARRAY = msgspec.json.Decoder(list[msgspec.Raw])


class DuplicateMember(SpanError):
    """An object repeats a key (JSON leaves which one counts to each parser)."""

    def __init__(self, key: str) -> None:
        super().__init__(f"member {key!r} appears more than once")
        self.key = key


def raw_members(raw: bytes | msgspec.Raw) -> dict[str, msgspec.Raw]:
    return _RAW_OBJECT.decode(raw)


def raw_elements(raw: bytes | msgspec.Raw) -> list[msgspec.Raw]:
    return _RAW_ARRAY.decode(raw)


def duplicate_member(
    raw: bytes | msgspec.Raw, members: dict[str, msgspec.Raw] | None = None
) -> str | None:
    """The first key that occurs twice among the JSON object ``raw``'s own members, or None.
    ``raw`` must be valid JSON; ``members`` is its ``raw_members`` when the caller has it.

    Fast check: decoded to ``{key: raw value}`` (a repeated key keeps one value), a compact
    object with no repeat is exactly ``{``, ``"key":value`` and commas, ``}``. Escapes and
    whitespace only make the real object longer, and so does a dropped repeat: only when the
    sum falls short is the object walked member by member.
    """
    if members is None:
        members = _RAW_OBJECT.decode(raw)
    # Characters, not bytes, for keys: a lower bound still (a non-ASCII key takes the walk).
    accounted = 1 + 4 * len(members) + sum(map(len, members)) + sum(map(len, members.values()))
    if accounted == len(raw) or not members:
        return None
    return _walk_for_duplicate(as_text(bytes(raw)), members)


def _walk_for_duplicate(text: str, members: dict[str, msgspec.Raw]) -> str | None:
    """The exact check: read the keys in order, skipping each value by comparing it with the
    value the decoder kept for that key (a C compare); only a value that differs is scanned."""
    seen: set[str] = set()
    pos = _skip_ws_s(text, _skip_ws_s(text, 0) + 1)
    while pos < len(text) and text[pos] == '"':
        key, after = _scanstring(text, pos + 1, False)
        if key in seen:
            return str(key)
        seen.add(key)
        value_start = _skip_ws_s(text, _skip_ws_s(text, after) + 1)
        kept = members.get(key)
        value_end = _known_value_end(text, value_start, bytes(kept) if kept else b"")
        pos = _skip_ws_s(text, _skip_ws_s(text, value_end) + 1)
    return None


def _known_value_end(text: str, start: int, kept: bytes) -> int:
    end = start + len(kept)
    after = _skip_ws_s(text, end)
    # ``kept`` may be only a prefix of this value (a number: ``1`` of ``12``).
    if kept and text.startswith(kept.decode("latin-1"), start) and text[after : after + 1] in ",}":
        return end
    return end_of_value(text, start)


def duplicate_path(raw: bytes | msgspec.Raw, path: str) -> str | None:
    """The path (``path.key``, ``path[i]...``) of the first repeated member anywhere inside
    ``raw``, or None. For small values (this turn's message): each level is decoded again."""
    head = bytes(memoryview(raw)[:1])
    if head == b"{":
        members = _RAW_OBJECT.decode(raw)
        repeated = duplicate_member(raw, members)
        if repeated is not None:
            return f"{path}.{repeated}"
        children = [(f"{path}.{k}", v) for k, v in members.items()]
    elif head == b"[":
        children = [(f"{path}[{i}]", v) for i, v in enumerate(_RAW_ARRAY.decode(raw))]
    else:
        return None
    for child_path, child in children:
        found = duplicate_path(child, child_path)
        if found is not None:
            return found
    return None


def find_unique_member(text: str, start: int, key: str) -> Member | None:
    """Like ``find_member``, but reads every member and refuses a repeated ``key``."""
    found = None
    for name, member in iter_members(text, start):
        if name == key:
            if found is not None:
                raise DuplicateMember(key)
            found = member
    return found


class Spellings(NamedTuple):
    """How raw JSON can spell any of some ASCII ``letters`` inside a string (``spellings``)."""

    letters: bytes
    escapes: tuple[bytes, ...]  # the \\u escape of each letter, in either hex case


def spellings(letters: bytes) -> Spellings:
    """``letters`` as they are, or a ``\\u`` escape of one of them: no other escape yields a
    letter, so raw bytes holding none of these hold no decoded string containing ``letters``
    (an escaped backslash before ``u0068`` only makes ``may_spell`` say maybe)."""
    assert letters.isascii()
    escapes = {(b"\\u%04" + case) % c for c in set(letters) for case in (b"x", b"X")}
    return Spellings(letters, tuple(sorted(escapes)))


def may_spell(raw: bytes, spelled: Spellings) -> bool:
    """Whether a string in the JSON ``raw`` may contain ``spelled.letters``. Each test is one
    C scan of ``raw``; most text has no ``\\u00`` escape at all (every ASCII one starts so)."""
    if spelled.letters in raw:
        return True
    return b"\\u00" in raw and any(e in raw for e in spelled.escapes)
