"""Rewriting a door's request body as a Messages body: the top-level members the door's
shape adds are cut, ``model`` (and ``stream``) put first, and every other member keeps its
exact bytes (prompt text, thinking signatures and key order untouched)."""

from __future__ import annotations

from collections.abc import Collection

import msgspec
import orjson

from sluice.base.json_spans import SpanError
from sluice.base.text import MAX_IDENTIFIER_CHARS, echo
from sluice.errors import InvalidRequest
from sluice.translate.members import rewrite_top_level

_MEMBERS = msgspec.json.Decoder(dict[str, msgspec.Raw])


def as_messages_body(
    body: bytes, model: str, *, remove: Collection[str], stream: bool | None = None
) -> bytes:
    """``body`` with ``remove`` cut and ``model`` (plus ``stream`` when not None) put first."""
    head = [b'"model":' + orjson.dumps(model)]
    cut = {"model", *remove}
    if stream is not None:
        head.append(b'"stream":true' if stream else b'"stream":false')
        cut.add("stream")
    try:
        return rewrite_top_level(body, cut, head)
    except (SpanError, RecursionError) as exc:
        raise InvalidRequest(
            f"The request body must be a JSON object: {exc}"[:300],
            tips=["Send the body your SDK builds for this model."],
        ) from exc


def member(body: bytes, name: str) -> object:
    """One small top-level member, decoded (None when absent or the body is not an object)."""
    try:
        raw = _MEMBERS.decode(body).get(name)
        return None if raw is None else msgspec.json.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return None


def model_from_path(model_id: str) -> str:
    """A model id taken from the URL: bounded and non-empty, or a 400 naming it."""
    if not model_id or len(model_id) > MAX_IDENTIFIER_CHARS:
        raise InvalidRequest(
            f"The model id in the path is empty or longer than {MAX_IDENTIFIER_CHARS} "
            f"characters: '{echo(model_id)}'.",
            param="model",
        )
    return model_id
