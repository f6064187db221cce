"""The virtual key, as governance sees it: a stored row with its config parsed and validated.

The store keeps rows plain (``KeyRow``, the config as its JSON document); the conversion both
ways lives here, so the store never depends on the key's rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from sluice.config.vk import VirtualKeyConfig
from sluice.store.keys_repo import KeyRow


@dataclass(frozen=True, slots=True)
class VirtualKey:
    id: str
    name: str
    environment: str
    display_prefix: str
    key_hash: str
    status: str
    created_at: int
    updated_at: int
    description: str | None = None
    project: str | None = None
    principal: str | None = None
    team: str | None = None
    organization: str | None = None
    previous_key_hash: str | None = None
    previous_valid_until: int | None = None
    expires_at: int | None = None
    last_used_at: int | None = None
    config: VirtualKeyConfig = field(default_factory=VirtualKeyConfig)

    def public_dict(self) -> dict[str, Any]:
        """Everything an admin may see; never the hashes."""
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "display_prefix": self.display_prefix,
            "environment": self.environment,
            "status": self.status,
            "project": self.project,
            "principal": self.principal,
            "team": self.team,
            "organization": self.organization,
            "expires_at": self.expires_at,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "last_used_at": self.last_used_at,
            "rotation_grace_until": self.previous_valid_until,
            "config": self.config.to_document(),
        }


_PLAIN = tuple(name for name in VirtualKey.__slots__ if name != "config")


def key_from_row(row: KeyRow) -> VirtualKey:
    """Parse and validate the stored config (as stored: rules since tightened still load)."""
    document = orjson.loads(row.config or "{}")
    config = VirtualKeyConfig.model_validate(document, context={"stored": True})
    return VirtualKey(**{name: getattr(row, name) for name in _PLAIN}, config=config)


def key_to_row(key: VirtualKey) -> KeyRow:
    document = orjson.dumps(key.config.to_document()).decode()
    return KeyRow(**{name: getattr(key, name) for name in _PLAIN}, config=document)
