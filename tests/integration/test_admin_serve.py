"""`sluice serve` starts the admin API beside the gateway; `sluice admin` manages its tokens."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
from test_serve import SLUICE, clean_env, free_port, serving

from sluice.testing import FakeAnthropic

BODY = b'{"model":"claude-opus-4-8","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}'


async def sluice(cwd: Path, *args: str, expect: int = 0) -> tuple[str, str]:
    proc = await asyncio.create_subprocess_exec(
        SLUICE,
        *args,
        cwd=cwd,
        env=clean_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == expect, err.decode()
    return out.decode(), err.decode()


async def get(url: str, token: str) -> tuple[int, Any]:
    headers = {"authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as s, s.get(url, headers=headers) as r:
        return r.status, await r.json()


async def test_serve_runs_the_admin_api_and_cli_tokens_work(
    tmp_path: Path, fake: FakeAnthropic
) -> None:
    admin_port = free_port()
    (tmp_path / "sluice.yaml").write_text(
        "database: sqlite:///./s.db\nsecret_key: serve-secret\nmetrics: {enabled: false}\n"
        f"admin: {{port: {admin_port}}}\n"
        f"providers:\n  a: {{type: anthropic, api_key: sk-ant-x, base_url: '{fake.url}'}}\n"
    )
    out, _ = await sluice(
        tmp_path, "admin", "create-token", "--name", "ci", "--role", "admin", "--json"
    )
    minted = json.loads(out)
    assert set(minted) == {"id", "name", "role", "token"} and minted["role"] == "admin"
    viewer = json.loads(
        (
            await sluice(
                tmp_path,
                "admin",
                "create-token",
                "--name",
                "v",
                "--role",
                "viewer",
                "--project",
                "web",
                "--json",
            )
        )[0]
    )
    listed = json.loads((await sluice(tmp_path, "admin", "list-tokens", "--json"))[0])
    assert [t["name"] for t in listed] == ["ci", "v"] and listed[1]["project"] == "web"
    assert all("token" not in t and "token_hash" not in t for t in listed)
    await sluice(tmp_path, "admin", "create-token", "--name", "x", "--role", "root", expect=2)
    api = f"http://127.0.0.1:{admin_port}/api/v1"
    async with serving(tmp_path) as (url, proc):
        status, body = await get(f"{api}/keys", minted["token"])
        assert status == 200 and body == {"data": []}
        headers = {"authorization": f"Bearer {minted['token']}"}
        async with aiohttp.ClientSession() as s:
            async with s.post(f"{api}/keys", json={"name": "k"}, headers=headers) as r:
                assert r.status == 201
                key = (await r.json())["key"]
            async with s.post(f"{url}/v1/messages", data=BODY, headers={"x-api-key": key}) as r:
                assert r.status == 200
            async with s.post(f"{url}/api/v1/keys", json={"name": "k"}, headers=headers) as r:
                assert r.status == 404  # the inference listener serves no admin API
        assert (await get(f"{api}/keys", viewer["token"]))[0] == 200
        await sluice(tmp_path, "admin", "revoke-token", viewer["id"], "--json")
        assert (await get(f"{api}/keys", viewer["token"]))[0] == 401
        assert proc.returncode is None
    db = (
        (tmp_path / "s.db").read_bytes() + (tmp_path / "s.db-wal").read_bytes()
        if (tmp_path / "s.db-wal").exists()
        else (tmp_path / "s.db").read_bytes()
    )
    assert minted["token"].encode() not in db and key.encode() not in db
