"""What `sluice serve` prints once it is really listening: where, what runs, what to do next.

The single-worker server announces after uvicorn has bound its port (never before, so a
banner never names a port that could not be bound); several workers announce up front.
"""

from __future__ import annotations

import os
import re
import socket
import sys
from collections.abc import Callable
from pathlib import Path

import uvicorn
import yaml

from sluice.cli.common import console, warn
from sluice.config.models import SluiceConfig
from sluice.server.app import SluiceApp

_WHOLE_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class AnnouncingServer(uvicorn.Server):
    """A uvicorn server that calls ``announce`` once it listens (start-up succeeded)."""

    def __init__(self, config: uvicorn.Config, announce: Callable[[], None]) -> None:
        super().__init__(config)
        self._announce = announce

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:  # bound and serving (a signal may already be asking it to stop)
            self._announce()


def warn_empty_provider_keys(path: Path | None) -> None:
    """A provider ``api_key: ${VAR}`` whose variable is unset or empty: say which variable."""
    if path is None or not path.exists():
        return
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError:
        return  # config_or_exit already reported it
    providers = raw.get("providers") if isinstance(raw, dict) else None
    for pid, provider in (providers or {}).items():
        value = provider.get("api_key") if isinstance(provider, dict) else None
        match = _WHOLE_VAR.fullmatch(value.strip()) if isinstance(value, str) else None
        if match and not os.environ.get(match.group(1)):
            warn(
                f"providers.{pid}.api_key is ${{{match.group(1)}}}, and {match.group(1)} is "
                "not set (or empty): this provider has no key and its requests will fail"
            )


def _tracing_line(cfg: SluiceConfig) -> str | None:
    if not cfg.tracing.enabled:
        return None
    from sluice.telemetry.export import default_target  # the OTLP exporter: only when tracing

    places = ["the local store (`sluice traces list`)"] if cfg.tracing.store else []
    target = default_target(cfg.tracing, os.environ)
    if target is not None:
        places.append(f"OTLP {target.endpoint}")
    if cfg.tracing.projects:
        places.append(f"per-project collectors ({', '.join(cfg.tracing.projects)})")
    return "Tracing on: spans go to " + (", ".join(places) or "nowhere (store: false, no OTLP)")


def next_steps(base_url: str, config_path: Path | None) -> str:
    prog = sys.argv[0] if Path(sys.argv[0]).name == "sluice" else "sluice"
    config = f" --config {config_path}" if config_path is not None else ""
    return (
        "\nNext steps:\n"
        f"  1. Mint a key (its secret is shown once):\n"
        f"       {prog} keys create --name my-laptop --principal $USER{config}\n"
        "  2. Point Claude Code at Sluice, then run `claude`:\n"
        f"       export ANTHROPIC_BASE_URL={base_url}\n"
        "       export ANTHROPIC_AUTH_TOKEN=lw_vk_live_…   # the key from step 1"
    )


def announce(
    app: SluiceApp | None,
    cfg: SluiceConfig,
    url: str,
    workers: int,
    metrics: str,
    config_path: Path | None,
    admin: str | None = None,
) -> Callable[[], None]:
    """The start-up text; ``app`` (single worker) tells what really started; ``admin``: the
    admin API's line, when it listens."""

    def show() -> None:
        lines = [f"Sluice listening on {url} (workers={workers})"]
        served = app.services.metrics_server if app is not None else None
        if app is not None and cfg.metrics.enabled:
            lines.append(
                f"Metrics on {served.url}"
                if served is not None and served.url
                else f"Metrics: not served (port {cfg.metrics.port} is in use; "
                "choose another with metrics.port)"
            )
        else:
            lines.append(metrics)
        if admin is not None:
            lines.append(admin)
        if (tracing := _tracing_line(cfg)) is not None:
            lines.append(tracing)
        if app is not None and app.services.demo:
            lines.append(
                "\nDEMO MODE: no provider key is configured, so replies come from a canned "
                "fake upstream, not a real model. Set ANTHROPIC_API_KEY (or add a provider to "
                "sluice.yaml) and restart to relay to Anthropic."
            )
        console.print("\n".join(lines), highlight=False, soft_wrap=True)
        local = url.replace("://0.0.0.0:", "://127.0.0.1:").replace("://[::]:", "://[::1]:")
        console.print(next_steps(local, config_path), highlight=False, soft_wrap=True)

    return show
