"""``sluice keys``: mint and manage virtual keys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import typer
from rich.table import Table
from rich.text import Text

from sluice.base.clock import SystemClock
from sluice.cli.common import (
    ConfigOption,
    JsonOption,
    config_or_exit,
    console,
    fail,
    given,
    iso,
    open_db,
    parse_when,
    print_json,
    run,
)
from sluice.cli.remote import TokenOption, UrlOption, current, remember, resolve
from sluice.cli.tables import Col, clean, print_table
from sluice.config.loader import ConfigProblems, load_yaml
from sluice.config.vk import VirtualKeyConfig, set_path
from sluice.governance.key_admin import KeyAdmin, KeyAdminError, MintedKey
from sluice.governance.virtual_key import VirtualKey
from sluice.store.keys_repo import KeysRepo

app = typer.Typer(help="Mint and manage virtual keys.", no_args_is_help=True)
_MATCH = ("display_prefix", "name")  # how a key is found remotely besides its id
KeyArgument = typer.Argument(
    ..., metavar="ID", help="The key's id, display prefix, name (if unique) or the key itself."
)


@app.callback()
def _remote(url: str | None = UrlOption, token: str | None = TokenOption) -> None:
    """Mint and manage virtual keys (remotely with --url/--token or SLUICE_ADMIN_URL)."""
    remember(url, token)


def _remote_id(ident: str) -> str:
    remote = current()
    assert remote is not None
    return str(resolve(remote, "keys", ident, _MATCH)["id"])


async def _with_admin(config_path: Path | None, action: Any) -> Any:
    config = config_or_exit(config_path)
    async with open_db(config) as (engine, secret):
        admin = KeyAdmin(KeysRepo(engine), secret, SystemClock())
        try:
            return await action(admin)
        except KeyAdminError as exc:
            fail(str(exc))
        except ConfigProblems as exc:
            fail("; ".join(str(p) for p in exc.problems))
    return None


def _show(key: VirtualKey | dict[str, Any], as_json: bool, secret: str | None = None) -> None:
    """A key as the API and ``--json`` give it (``public_dict``), the secret this once."""
    payload = dict(key) if isinstance(key, dict) else key.public_dict()
    secret = payload.pop("key", None) or secret
    if secret is not None:
        payload["key"] = secret
    if as_json:
        print_json(payload)
        return
    table = Table(show_header=False, box=None)
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold")
    for name in (
        "id",
        "name",
        "display_prefix",
        "status",
        "environment",
        "principal",
        "project",
        "team",
        "organization",
        "description",
    ):
        table.add_row(name, Text(clean(payload[name])))
    for name in ("expires_at", "created_at", "last_used_at", "rotation_grace_until"):
        table.add_row(name, iso(payload[name]))
    table.add_row("config", Text(clean(orjson.dumps(payload["config"]).decode())))
    console.print(table)
    if secret is not None:
        console.print("\n[bold]Key (shown once, store it now):[/bold]")
        console.print(secret, highlight=False, soft_wrap=True)


@app.command()
def create(
    name: str = typer.Option(..., "--name", help="A name for the key."),
    description: str | None = typer.Option(None, "--description"),
    project: str | None = typer.Option(None, "--project"),
    principal: str | None = typer.Option(None, "--principal", help="The user id it belongs to."),
    team: str | None = typer.Option(None, "--team"),
    organization: str | None = typer.Option(None, "--organization"),
    expires: str | None = typer.Option(None, "--expires", help="A date, or a duration like 30d."),
    test: bool = typer.Option(False, "--test", help="Mint an lw_vk_test_ key."),
    config_file: Path | None = typer.Option(None, "--config-file", help="YAML/JSON key config."),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Create a key; its secret is printed this once."""

    async def action(admin: KeyAdmin) -> MintedKey:
        now = SystemClock().now_ms()
        vk_config = _load_vk_config(config_file) if config_file else None
        return await admin.create(
            name=name,
            description=description,
            project=project,
            principal=principal,
            team=team,
            organization=organization,
            expires_at=parse_when(expires, now, future=True) if expires else None,
            test=test,
            config=vk_config,
        )

    remote = current()
    if remote is not None:
        body = given(
            name=name,
            description=description,
            project=project,
            principal=principal,
            team=team,
            organization=organization,
        )
        if expires:
            body["expires_at"] = parse_when(expires, SystemClock().now_ms(), future=True)
        if config_file:
            body["config"] = _load_vk_config(config_file).to_document()
        _show(remote.call("POST", "/keys", {**body, "test": test}), as_json)
        return
    minted: MintedKey = run(lambda: _with_admin(config, action))
    _show(minted.key, as_json, minted.secret)


@app.command("list")
def list_keys(config: Path | None = ConfigOption, as_json: bool = JsonOption) -> None:
    """List keys (never their secrets)."""

    async def action(admin: KeyAdmin) -> list[VirtualKey]:
        return await admin.list_all()

    remote = current()
    if remote is not None:
        keys: list[dict[str, Any]] = remote.call("GET", "/keys")["data"]
    else:
        keys = [k.public_dict() for k in run(lambda: _with_admin(config, action))]
    if as_json:
        print_json(keys)
        return
    print_table(
        [
            Col("id", keep=True),
            Col("prefix", keep=True),
            Col("name"),
            Col("status"),
            Col("principal", drop=3),
            Col("project", drop=4),
            Col("expires", drop=6),
            Col("last used", drop=5),
        ],
        [
            [
                k["id"],
                k["display_prefix"],
                k["name"],
                k["status"],
                k["principal"],
                k["project"],
                iso(k["expires_at"]),
                iso(k["last_used_at"]),
            ]
            for k in keys
        ],
    )


@app.command()
def show(
    key_id: str = KeyArgument,
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Show one key (by id, display prefix, name or the key itself)."""
    remote = current()
    if remote is not None:
        _show(remote.call("GET", f"/keys/{_remote_id(key_id)}"), as_json)
        return
    key: VirtualKey = run(lambda: _with_admin(config, lambda admin: admin.resolve(key_id)))
    _show(key, as_json)


@app.command()
def rotate(
    key_id: str = KeyArgument,
    grace: str = typer.Option("24h", "--grace", help="How long the old secret keeps working."),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Issue a new secret; the old one stays valid for --grace."""
    grace_s = (parse_when(grace, 0, future=True) // 1000) if grace != "0" else 0
    remote = current()
    if remote is not None:
        path = f"/keys/{_remote_id(key_id)}/rotate"
        _show(remote.call("POST", path, {"grace_s": grace_s}), as_json)
        return
    minted: MintedKey = run(
        lambda: _with_admin(config, lambda admin: admin.rotate(key_id, grace_s or 0))
    )
    _show(minted.key, as_json, minted.secret)


def _status_command(status: str, doc: str) -> None:
    verb = {"active": "enable", "disabled": "disable", "revoked": "revoke"}[status]

    def command(
        key_id: str = KeyArgument,
        config: Path | None = ConfigOption,
        as_json: bool = JsonOption,
    ) -> None:
        remote = current()
        if remote is not None:
            _show(remote.call("POST", f"/keys/{_remote_id(key_id)}/{verb}"), as_json)
            return
        key: VirtualKey = run(lambda: _with_admin(config, lambda a: a.set_status(key_id, status)))
        _show(key, as_json)

    command.__doc__ = doc
    app.command(verb)(command)


_status_command("disabled", "Disable a key (reversible).")
_status_command("active", "Re-enable a disabled key.")
_status_command("revoked", "Revoke a key. Final.")


def _load_vk_config(path: Path) -> VirtualKeyConfig:
    try:
        data = load_yaml(path.read_text(encoding="utf-8"), str(path)) or {}
        if not isinstance(data, dict):
            fail(f"{path}: the top level must be a mapping")
        return VirtualKeyConfig.parse(data, str(path))
    except ConfigProblems as exc:
        fail("; ".join(str(p) for p in exc.problems))


@app.command()
def update(
    key_id: str = KeyArgument,
    set_: list[str] = typer.Option(
        [],
        "--set",
        help="path=JSON, e.g. policy_rules.tools.deny='[\"^Bash$\"]'; path=null removes it",
    ),
    unset: list[str] = typer.Option(
        [], "--unset", help="Remove a setting (its default applies), e.g. rate_limits."
    ),
    config_file: Path | None = typer.Option(
        None, "--config-file", help="Replace the whole key config."
    ),
    name: str | None = typer.Option(None, "--name"),
    description: str | None = typer.Option(None, "--description"),
    project: str | None = typer.Option(None, "--project"),
    principal: str | None = typer.Option(None, "--principal"),
    team: str | None = typer.Option(None, "--team"),
    organization: str | None = typer.Option(None, "--organization"),
    expires: str | None = typer.Option(None, "--expires"),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Edit a key's fields or its config document (validated before it is saved)."""
    fields = given(
        name=name,
        description=description,
        project=project,
        principal=principal,
        team=team,
        organization=organization,
    )
    if expires is not None:
        fields["expires_at"] = parse_when(expires, SystemClock().now_ms(), future=True)
    edited = bool(set_ or unset or config_file)

    def document(current_doc: dict[str, Any]) -> dict[str, Any]:
        doc = _load_vk_config(config_file).to_document() if config_file else current_doc
        return _edit(doc, set_, unset)

    remote = current()
    if remote is not None:
        key_data = resolve(remote, "keys", key_id, _MATCH)
        if edited:  # validated by the API (a 422 names the bad path)
            fields["config"] = document(key_data["config"])
        _show(remote.call("PATCH", f"/keys/{key_data['id']}", fields), as_json)
        return

    async def action(admin: KeyAdmin) -> VirtualKey:
        key = await admin.resolve(key_id)
        doc = document(key.config.to_document())
        new_config = VirtualKeyConfig.parse(doc, "config") if edited else None
        return await admin.update(key.id, config=new_config, fields=fields)

    key: VirtualKey = run(lambda: _with_admin(config, action))
    _show(key, as_json)


def _edit(document: dict[str, Any], set_: list[str], unset: list[str]) -> dict[str, Any]:
    for item in set_:
        path, sep, raw = item.partition("=")
        if not sep:
            fail(f"--set {item!r}: expected path=JSON")
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            value = raw  # a bare word is taken as a string
        document = set_path(document, path.strip(), value)
    for path in unset:
        document = set_path(document, path.strip(), None)
    return document
