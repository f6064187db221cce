"""Virtual keys on the request path: statuses, expiry, rotation grace, storage, propagation."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import sqlite3
import sys
from pathlib import Path

import aiohttp
import pytest

from sluice.base.clock import ManualClock
from sluice.testing import FakeAnthropic

from support import SECRET, Gateway, database_files, start_gateway

BODY = b'{"model":"claude-opus-4-8","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}'


async def call(url: str, key: str, *, bearer: bool = False) -> tuple[int, dict[str, object]]:
    headers = {"authorization": f"Bearer {key}"} if bearer else {"x-api-key": key}
    async with (
        aiohttp.ClientSession() as s,
        s.post(f"{url}/v1/messages", data=BODY, headers=headers) as r,
    ):
        return r.status, await r.json()


async def test_disable_enable_revoke(gateway: Gateway, fake: FakeAnthropic) -> None:
    key_id = gateway.minted.key.id
    assert (await call(gateway.url, gateway.key))[0] == 200
    await gateway.admin.set_status(key_id, "disabled")
    await gateway.server.app.services.keys.refresh(None)  # type: ignore[union-attr]
    status, body = await call(gateway.url, gateway.key)
    assert status == 403
    assert body["error"]["code"] == "virtual_key_disabled"  # type: ignore[index]
    await gateway.admin.set_status(gateway.minted.key.display_prefix, "active")
    await gateway.server.app.services.keys.refresh(None)  # type: ignore[union-attr]
    assert (await call(gateway.url, gateway.key))[0] == 200
    await gateway.admin.set_status(key_id, "revoked")
    await gateway.server.app.services.keys.refresh(None)  # type: ignore[union-attr]
    status, body = await call(gateway.url, gateway.key, bearer=True)
    assert status == 403
    assert body["error"]["code"] == "virtual_key_revoked"  # type: ignore[index]
    assert gateway.minted.key.display_prefix in body["error"]["message"]  # type: ignore[index]
    with pytest.raises(Exception, match="final"):
        await gateway.admin.set_status(key_id, "active")
    assert len(fake.messages_requests()) == 2
    refused = [r for r in await gateway.ledger_rows() if r["status"] == 403]
    assert [r["error_code"] for r in refused] == ["virtual_key_disabled", "virtual_key_revoked"]
    assert {r["vk_id"] for r in refused} == {key_id}  # refusals are charged to the key


async def test_expiry_and_rotation_grace_follow_the_clock(
    tmp_path: Path, fake: FakeAnthropic
) -> None:
    clock = ManualClock()
    gw = await start_gateway(tmp_path / "s.db", fake.url, clock=clock)
    try:
        expiring = await gw.admin.create(name="short", expires_at=clock.now_ms() + 3_600_000)
        assert (await call(gw.url, expiring.secret))[0] == 200
        clock.advance(3601)
        status, body = await call(gw.url, expiring.secret)
        assert status == 403
        assert body["error"]["code"] == "virtual_key_expired"  # type: ignore[index]

        old = gw.key
        rotated = await gw.admin.rotate(gw.minted.key.id, grace_s=24 * 3600)
        await gw.server.app.services.keys.refresh(None)  # type: ignore[union-attr]
        assert rotated.secret != old
        assert rotated.secret[:37] == old[:37]  # same id: the prefix and ULID stay
        assert (await call(gw.url, rotated.secret))[0] == 200
        assert (await call(gw.url, old))[0] == 200  # within the grace period
        clock.advance(24 * 3600 + 1)
        assert (await call(gw.url, old))[0] == 401
        assert (await call(gw.url, rotated.secret))[0] == 200

        again = await gw.admin.rotate(gw.minted.key.id, grace_s=0)
        await gw.server.app.services.keys.refresh(None)  # type: ignore[union-attr]
        assert (await call(gw.url, rotated.secret))[0] == 401
        assert (await call(gw.url, again.secret))[0] == 200
    finally:
        await gw.server.stop()


async def test_test_and_live_prefixes_are_not_interchangeable(gateway: Gateway) -> None:
    minted = await gateway.mint(test=True)
    assert minted.secret.startswith("lw_vk_test_")
    assert (await call(gateway.url, minted.secret))[0] == 200
    swapped = minted.secret.replace("lw_vk_test_", "lw_vk_live_", 1)
    assert (await call(gateway.url, swapped))[0] == 401


async def test_key_stored_only_as_hmac(gateway: Gateway) -> None:
    await call(gateway.url, gateway.key)
    await gateway.ledger_rows()
    await gateway.server.stop()  # checkpoint the WAL so the main file holds everything
    files = database_files(gateway.db_path.parent)
    secret_part = gateway.key[len("lw_vk_live_") + 26 :]
    for path in files:
        data = path.read_bytes()
        assert gateway.key.encode() not in data, path
        assert secret_part.encode() not in data, path
    row = (
        sqlite3.connect(gateway.db_path)
        .execute(
            "select key_hash, display_prefix from virtual_keys where id = ?",
            (gateway.minted.key.id,),
        )
        .fetchone()
    )
    expected = hmac.new(SECRET.encode(), gateway.key.encode(), hashlib.sha256).hexdigest()
    assert row == (expected, "lw_vk_live_" + gateway.key[30:37])


async def test_disable_from_another_process_propagates_within_5s(
    tmp_path: Path, fake: FakeAnthropic
) -> None:
    """A `sluice keys disable` run as a separate process reaches a serving gateway in <5 s,
    with the default refresh interval."""
    db = tmp_path / "shared.db"
    config_file = tmp_path / "sluice.yaml"
    config_file.write_text(
        f"database: sqlite:///{db}\nsecret_key: {SECRET}\n"
        f"providers:\n  anthropic-primary: {{type: anthropic, base_url: '{fake.url}'}}\n"
    )
    gw = await start_gateway(db, fake.url, refresh_s=2.0)  # the default interval
    try:
        assert (await call(gw.url, gw.key))[0] == 200  # now cached in memory
        sluice = Path(sys.executable).parent / "sluice"
        proc = await asyncio.create_subprocess_exec(
            str(sluice),
            "keys",
            "disable",
            gw.minted.key.display_prefix,
            "--config",
            str(config_file),
            "--json",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "NO_COLOR": "1"},
        )
        out, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        assert b'"status": "disabled"' in out
        loop = asyncio.get_running_loop()
        started = loop.time()
        while (await call(gw.url, gw.key))[0] == 200:
            assert loop.time() - started < 5.0, "disable did not propagate within 5 s"
            await asyncio.sleep(0.1)
        assert (await call(gw.url, gw.key))[0] == 403
    finally:
        await gw.server.stop()
