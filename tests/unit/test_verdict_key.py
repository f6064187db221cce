"""The remembered-verdict key survives what Claude Code changes in its non-streaming retry."""

from __future__ import annotations

import orjson

from sluice.core.context import RequestContext
from sluice.core.peek import peek_messages_body
from sluice.governance.verdicts import conversation_fingerprint


def _key(body: dict[str, object]) -> bytes:
    ctx = RequestContext("r", "messages", "/v1/messages", "", [], 0.0, 0)
    ctx.body = orjson.dumps(body)
    peek_messages_body(ctx)
    return conversation_fingerprint(ctx.model_requested or "", bytes(ctx.messages_raw))


def test_the_retry_of_2_1_332_shares_the_verdict() -> None:
    messages = [{"role": "user", "content": [{"type": "text", "text": "run rm -rf /"}]}]
    first = {"model": "claude-opus-5-5", "messages": messages, "max_tokens": 128000, "stream": True}
    # 2.1.197's retry drops `stream`; 2.1.332's sets it false and lowers max_tokens.
    retry_197 = {"model": "claude-opus-5-5", "messages": messages, "max_tokens": 128000}
    retry_332 = {**first, "stream": False, "max_tokens": 64000}
    assert _key(first) == _key(retry_197) == _key(retry_332)


def test_another_conversation_or_model_is_another_verdict() -> None:
    base = {"model": "m", "messages": [{"role": "user", "content": "a"}], "max_tokens": 5}
    assert _key(base) != _key({**base, "messages": [{"role": "user", "content": "b"}]})
    assert _key(base) != _key({**base, "model": "n"})
