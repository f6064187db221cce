"""The resolver looks a provider's listed models up in a set it keeps per list, so it must
follow a provider that hands out a new list (a discovery refresh)."""

from __future__ import annotations

import pytest

from sluice.config.vk import VirtualKeyConfig
from sluice.core.resolve import ModelResolver
from sluice.core.router import Router
from sluice.errors import ModelNotRecognized
from sluice.governance.virtual_key import VirtualKey
from sluice.providers.base import ModelInfo
from sluice.providers.demo import DemoProvider

KEY = VirtualKey(
    "vk_1", "k", "live", "sk-lw-abc", "h", "active", 0, 0, config=VirtualKeyConfig.parse({})
)


class Refreshing(DemoProvider):
    def __init__(self) -> None:
        super().__init__("p")
        self.kind = "openai"  # no unlisted name passes as sent: only the list decides
        self.listed = [ModelInfo("gpt-old", "old")]

    async def list_models(self) -> list[ModelInfo]:
        return self.listed


async def test_a_refreshed_list_is_what_resolution_sees() -> None:
    provider = Refreshing()
    resolver = ModelResolver(Router({"p": provider}))
    assert (await resolver.resolve(KEY, "gpt-old")).known
    provider.listed = [ModelInfo("gpt-new", "new")]  # a refresh: a new list
    assert (await resolver.resolve(KEY, "gpt-new")).known
    with pytest.raises(ModelNotRecognized):  # the refreshed list dropped it
        await resolver.resolve(KEY, "gpt-old")
