"""Display prefixes are unique in practice: keys minted together never share one."""

from __future__ import annotations

from pathlib import Path

from sluice.base.clock import SystemClock
from sluice.governance import vk_format
from sluice.governance.key_admin import KeyAdmin
from sluice.store.db import create_engine, migrate
from sluice.store.keys_repo import KeysRepo


async def test_a_thousand_keys_minted_in_a_loop_have_distinct_prefixes(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'keys.db'}")
    try:
        await migrate(engine)
        admin = KeyAdmin(KeysRepo(engine), b"secret", SystemClock())
        minted = [await admin.create(name=f"k{n}") for n in range(1000)]
        prefixes = {m.key.display_prefix for m in minted}
        assert len(prefixes) == 1000
        first = minted[0]
        assert len(first.key.display_prefix) == vk_format.DISPLAY_PREFIX_LEN
        assert first.key.display_prefix.startswith("lw_vk_live_")
        # Every prefix still finds its one key, and the key's id is in the key itself.
        assert [k.id for k in await KeysRepo(engine).find(first.key.display_prefix)] == [
            first.key.id
        ]
        # Rotation keeps the prefix (it comes from the id's random part) and it stays unique.
        rotated = await admin.rotate(first.key.id, grace_s=0)
        assert rotated.key.display_prefix == first.key.display_prefix
        assert rotated.secret != first.secret
    finally:
        await engine.dispose()
