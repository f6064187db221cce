"""Peek the few fields the pipeline needs from the request body, without a full parse.

A Claude Code body is 76-125 KB, mostly tool schemas and history. A full ``orjson.loads``
builds every object in it (and feeds the garbage collector) on every request; msgspec decodes
the top level to ``{key: raw JSON}`` (validating the rest and skipping it), then only the
small members (``model``, ``stream``, ``max_tokens``, ``metadata``) are decoded. The full
parse happens only when a key's policy needs it (``ctx.parsed_body()``).

JSON lets an object repeat a key and leaves which one counts to the parser: the gateway
could judge one ``mcp_servers`` while the upstream reads the other. So a body that repeats a
top-level member, or a member of ``metadata`` or of an ``mcp_servers[]`` entry, is refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeGuard

import msgspec
import orjson

from sluice.base.json_spans import (
    Spellings,
    duplicate_member,
    duplicate_path,
    may_spell,
    raw_elements,
    raw_members,
)
from sluice.base.text import MAX_IDENTIFIER_CHARS, echo
from sluice.core.context import RequestContext
from sluice.errors import InvalidRequest

_DECODE = msgspec.json.Decoder().decode


def repeated(member: str) -> InvalidRequest:
    return InvalidRequest(
        f"`{member}` appears more than once in the request body; send each member once.",
        param=member,
    )


def too_deep() -> InvalidRequest:
    return InvalidRequest(
        "The request body is nested too deeply for the gateway's JSON parser (its limit is "
        "just under 1,000 levels).",
        tips=["Send a Messages API body; real ones nest about a dozen levels."],
    )


def _as_400(exc: msgspec.DecodeError | RecursionError) -> InvalidRequest:
    """Nested members were skipped by the first pass, not decoded: their keys and strings may
    still be bytes that are not UTF-8, and they may nest past the parser's limit."""
    if isinstance(exc, RecursionError):
        return too_deep()
    return InvalidRequest(f"The request body is not valid JSON: {exc}")


@contextmanager
def _json_problems_are_400() -> Iterator[None]:
    try:
        yield
    except (msgspec.DecodeError, RecursionError) as exc:
        raise _as_400(exc) from exc


def last_message(ctx: RequestContext, spelled: Spellings | None = None) -> Any:
    """The last message, parsed alone (the rest of the history stays raw bytes). A member
    repeated anywhere inside it is refused: policy reads every string in it.

    With ``spelled`` (``json_spans.spellings(b"http")``): None, unparsed, when no string in
    the message can contain those letters, whichever parser reads it (no repeat can matter
    then): a URL policy's turns that cannot spell ``http`` skip the parse and the check."""
    if ctx.messages_raw is None:
        return None
    try:  # a plain try, not _json_problems_are_400(): this runs on every request
        items = ctx.message_items()
        if not items:
            return None
        if spelled is not None and not may_spell(bytes(items[-1]), spelled):
            return None
        where = duplicate_path(items[-1], f"messages[{len(items) - 1}]")
    except (msgspec.DecodeError, RecursionError) as exc:
        raise _as_400(exc) from exc
    if where is not None:
        raise repeated(where)
    return loads(items[-1])


def loads(raw: msgspec.Raw) -> Any:
    """Parse a member the peek kept raw (skipped strings were not checked for UTF-8)."""
    try:
        return orjson.loads(memoryview(raw))
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"The request body is not valid JSON: {exc}") from exc


def _session_from_metadata(metadata: Any) -> str | None:
    """Claude Code puts a JSON string in ``metadata.user_id`` that carries ``session_id``."""
    user_id = metadata.get("user_id") if isinstance(metadata, dict) else None
    if not isinstance(user_id, str) or not user_id.startswith("{"):
        return None
    try:
        decoded = orjson.loads(user_id)
    except orjson.JSONDecodeError:
        return None
    session = decoded.get("session_id") if isinstance(decoded, dict) else None
    return session if isinstance(session, str) and session else None


def _top_level(body: bytes) -> dict[str, msgspec.Raw]:
    try:
        members = raw_members(body)
    except msgspec.ValidationError as exc:
        raise InvalidRequest("The request body must be a JSON object.") from exc
    except msgspec.DecodeError as exc:
        raise InvalidRequest(
            f"The request body is not valid JSON: {exc}",
            tips=["Send a JSON object with `model`, `max_tokens` and `messages`."],
        ) from exc
    except RecursionError as exc:
        raise too_deep() from exc
    if (key := duplicate_member(body, members)) is not None:
        raise repeated(key)
    return members


def _is(raw: msgspec.Raw | None, opener: bytes) -> TypeGuard[msgspec.Raw]:
    """Whether ``raw`` is an object (``{``) or an array (``[``)."""
    return raw is not None and bytes(memoryview(raw)[:1]) == opener


def _small(raw: msgspec.Raw | None) -> Any:
    """Decode one small member (skipped values were validated as JSON, not as UTF-8)."""
    try:
        return None if raw is None else _DECODE(raw)
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"The request body is not valid JSON: {exc}") from exc


def _check_nested(members: dict[str, msgspec.Raw]) -> None:
    """Repeats inside the small objects the gateway reads or judges."""
    metadata = members.get("metadata")
    if _is(metadata, b"{") and (key := duplicate_member(metadata)) is not None:
        raise repeated(f"metadata.{key}")
    servers = members.get("mcp_servers")
    if _is(servers, b"["):
        for index, server in enumerate(raw_elements(servers)):
            if _is(server, b"{") and (key := duplicate_member(server)):
                raise repeated(f"mcp_servers[{index}].{key}")


def check_tools(body: bytes) -> None:
    """Repeats inside ``tools[]`` entries: run only when a policy reads the declared tools."""
    with _json_problems_are_400():
        tools = raw_members(body).get("tools")
        if _is(tools, b"["):
            for index, tool in enumerate(raw_elements(tools)):
                if _is(tool, b"{") and (key := duplicate_member(tool)):
                    raise repeated(f"tools[{index}].{key}")


def peek_messages_body(ctx: RequestContext) -> None:
    """Validate the minimum (a JSON object with ``model`` and ``messages``) and fill ``ctx``.

    Everything else is the upstream's to judge: unknown fields pass through untouched.
    """
    members = _top_level(ctx.body)
    model = _small(members.get("model"))
    if not isinstance(model, str) or not model:
        raise InvalidRequest("`model`: field required (a model name string).", param="model")
    if len(model) > MAX_IDENTIFIER_CHARS:
        ctx.model_requested = model[:MAX_IDENTIFIER_CHARS]  # the ledger keeps a cut form
        raise InvalidRequest(
            f"`model` is longer than {MAX_IDENTIFIER_CHARS} characters: '{echo(model)}'.",
            param="model",
        )
    messages = members.get("messages")
    if not _is(messages, b"["):
        raise InvalidRequest("`messages`: field required (an array of messages).", param="messages")
    try:  # a plain try, not _json_problems_are_400(): this runs on every request
        _check_nested(members)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise _as_400(exc) from exc
    ctx.messages_raw = messages
    ctx.mcp_servers_raw = members.get("mcp_servers")
    ctx.model_requested = model
    ctx.model_sent = model
    ctx.stream = _small(members.get("stream")) is True
    max_tokens = _small(members.get("max_tokens"))
    ctx.max_tokens = max_tokens if isinstance(max_tokens, int) else None
    header_session = _read_hints(ctx)
    session = (
        header_session.decode("latin-1")
        if header_session
        else _session_from_metadata(_small(members.get("metadata")))
    )
    ctx.session_id = session[:MAX_IDENTIFIER_CHARS] if session else session


_REQUEST_CLASS_CHARS = 32


def _read_hints(ctx: RequestContext) -> bytes | None:
    """Claude Code's identity headers, in one pass over the headers: the session id (returned),
    and with CLAUDE_CODE_GATEWAY_HINT_HEADERS=1 the request class and agent ids (on ``ctx``,
    capped: they are stored and shown, never trusted)."""
    session = None
    for name, value in ctx.headers:
        if not name.startswith(b"x-claude-code-"):
            continue
        if name == b"x-claude-code-session-id":
            session = session or value
        elif name == b"x-claude-code-request-class":
            ctx.request_class = value[:_REQUEST_CLASS_CHARS].decode("latin-1")
        elif name == b"x-claude-code-agent-id":
            ctx.agent_id = value[:MAX_IDENTIFIER_CHARS].decode("latin-1")
        elif name == b"x-claude-code-parent-agent-id":
            ctx.parent_agent_id = value[:MAX_IDENTIFIER_CHARS].decode("latin-1")
    return session
