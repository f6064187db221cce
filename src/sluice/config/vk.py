"""The per-virtual-key config document (stored as JSON on the key, edited with ``keys update``).

Field names follow the LangWatch vocabulary. Later pipeline steps read these; here they are
validated on save so that a bad pattern is refused then, never at request time.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from sluice.base.patterns import compile_pattern
from sluice.config.loader import ConfigProblem, ConfigProblems, problems_from_validation


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _compile_all(patterns: list[str], info: ValidationInfo) -> list[str]:
    # A stored key is loaded as it is (one saved before patterns were RE2 must not stop the
    # key list from loading): its policy fails closed on the pattern instead.
    if isinstance(info.context, dict) and info.context.get("stored"):
        return patterns
    for pattern in patterns:
        compile_pattern(pattern)  # PatternError is a ValueError: pydantic reports its path
    return patterns


class AllowDeny(_Closed):
    allow: list[str] = Field(default_factory=list)
    deny: list[str] = Field(default_factory=list)

    _valid = field_validator("allow", "deny")(_compile_all)


class ToolRules(AllowDeny):
    mode: Literal["block_calls", "strip", "reject_declared"] = "block_calls"


class PolicyRules(_Closed):
    tools: ToolRules = Field(default_factory=ToolRules)
    mcp: AllowDeny = Field(default_factory=AllowDeny)
    urls: AllowDeny = Field(default_factory=AllowDeny)
    models: AllowDeny = Field(default_factory=AllowDeny)


FallbackTrigger = Literal["5xx", "timeout", "rate_limit", "network"]
_ALL_TRIGGERS: list[FallbackTrigger] = ["5xx", "timeout", "rate_limit", "network"]


class FallbackConfig(_Closed):
    chain: list[str] = Field(default_factory=list)
    on: list[FallbackTrigger] = Field(default_factory=lambda: list(_ALL_TRIGGERS))
    timeout_ms: int = Field(default=30_000, ge=1)
    max_attempts: int | None = Field(default=None, ge=1)


class RateLimits(_Closed):
    rpm: int | None = Field(default=None, ge=1)
    tpm: int | None = Field(default=None, ge=1)
    rpd: int | None = Field(default=None, ge=1)
    max_concurrent: int | None = Field(default=None, ge=1)


class CacheConfig(_Closed):
    mode: Literal["respect", "disable"] = "respect"


class VirtualKeyConfig(_Closed):
    providers_allowed: list[str] | None = None
    model_aliases: dict[str, str] = Field(default_factory=dict)
    models_allowed: list[str] | None = None
    policy_rules: PolicyRules = Field(default_factory=PolicyRules)
    fallback: FallbackConfig = Field(default_factory=FallbackConfig)
    rate_limits: RateLimits = Field(default_factory=RateLimits)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    # Traces may carry message content only when the server allows it and this is not false.
    capture_content: bool | None = None

    @classmethod
    def parse(cls, data: dict[str, Any], source: str = "config") -> VirtualKeyConfig:
        try:
            return cls.model_validate(_without_nulls(data))
        except ValidationError as exc:
            raise ConfigProblems(source, problems_from_validation(exc)) from exc

    def to_document(self) -> dict[str, Any]:
        """The stored form: only what differs from the defaults, so documents stay readable."""
        return self.model_dump(mode="json", exclude_defaults=True)


def _without_nulls(data: dict[str, Any]) -> dict[str, Any]:
    """A null setting means "not set": its default applies (``rate_limits: null``)."""
    return {
        k: _without_nulls(v) if isinstance(v, dict) else v for k, v in data.items() if v is not None
    }


def set_path(document: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    """Return a copy of ``document`` with ``a.b.c`` set to ``value`` (``--set a.b.c=JSON``);
    ``None`` (``--set a.b.c=null``, ``--unset a.b.c``) removes the setting: its default applies."""
    parts = dotted.split(".")
    if not all(parts):
        raise ConfigProblems("--set", [ConfigProblem(dotted, "empty path segment")])
    root: dict[str, Any] = dict(document)
    node = root
    for part in parts[:-1]:
        child = node.get(part)
        child = dict(child) if isinstance(child, dict) else {}
        node[part] = child
        node = child
    if value is None:
        node.pop(parts[-1], None)
    else:
        node[parts[-1]] = value
    return root
