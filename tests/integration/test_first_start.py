"""What a newcomer sees on first start: busy ports, the next steps, demo mode, warnings."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from test_serve import clean_env, serving

SLUICE = str(Path(sys.executable).parent / "sluice")


@contextmanager
def occupied() -> Iterator[int]:
    """A port some other program listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield int(sock.getsockname()[1])


async def run(cwd: Path, *args: str, timeout: float = 60) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        SLUICE,
        *args,
        cwd=cwd,
        env=clean_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
        raise AssertionError(f"still running after {timeout}s: {out!r} {err!r}") from None
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def assert_one_line_about(err: str, port: int, setting: str) -> None:
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert str(port) in lines[0] and setting in lines[0], err


async def test_mock_on_a_busy_port_says_so_in_one_line(tmp_path: Path) -> None:
    with occupied() as port:
        rc, _out, err = await run(tmp_path, "mock", "anthropic", "--port", str(port))
    assert rc != 0
    assert_one_line_about(err, port, "--port")


async def test_serve_on_a_busy_port_says_so_in_one_line(tmp_path: Path) -> None:
    with occupied() as port:
        rc, out, err = await run(tmp_path, "serve", "--port", str(port))
    assert rc != 0
    assert "listening" not in out.lower(), out
    assert_one_line_about(err, port, "server.port")


async def test_a_busy_metrics_port_is_one_warning_and_no_false_banner(tmp_path: Path) -> None:
    """Replicas on one host may share a config, so a busy metrics port does not stop the
    gateway; it is one line naming the port and the setting, and the banner says so."""
    with occupied() as metrics_port:
        (tmp_path / "sluice.yaml").write_text(f"metrics: {{port: {metrics_port}}}\n")
        out, err, _port = await _start_and_stop(tmp_path)
    assert f":{metrics_port}/metrics" not in out, out  # no "Metrics on http://…:PORT"
    assert f"Metrics: not served (port {metrics_port} is in use" in out, out + err
    warning = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and str(metrics_port) in warning[0], err
    assert "metrics.port" in warning[0] and "Traceback" not in err


async def _start_and_stop(cwd: Path, env: dict[str, str] | None = None) -> tuple[str, str, int]:
    """Run `sluice serve` until it answers, stop it; its stdout, stderr and port."""
    async with serving(cwd) as (url, proc):
        proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    return out.decode(), err.decode(), int(url.rsplit(":", 1)[1])


async def test_first_start_ends_with_the_next_steps_and_announces_demo_mode(
    tmp_path: Path,
) -> None:
    (tmp_path / "sluice.yaml").write_text("metrics: {port: 0}\n")
    out, _err, port = await _start_and_stop(tmp_path)
    lines = [line for line in out.splitlines() if line.strip()]
    assert lines[-1].strip().startswith("export ANTHROPIC_AUTH_TOKEN=lw_vk_live_"), out
    assert lines[-2].strip() == f"export ANTHROPIC_BASE_URL=http://127.0.0.1:{port}", out
    assert any("sluice keys create --name" in line for line in lines), out
    demo = next(line for line in lines if "DEMO MODE" in line)
    assert not demo.lstrip().startswith("{") and "not a real model" in demo, out
    metrics = next(line for line in lines if line.startswith("Metrics on http://127.0.0.1:"))
    assert not metrics.endswith(":0/metrics"), out  # the port really bound, not the setting


async def test_tracing_and_an_empty_provider_key_are_announced(tmp_path: Path) -> None:
    (tmp_path / "sluice.yaml").write_text(
        "metrics: {enabled: false}\n"
        "tracing: {enabled: true}\n"
        "providers:\n"
        "  anthropic-primary: {type: anthropic, api_key: '${SLUICE_NEWCOMER_UNSET_KEY}'}\n"
    )
    out, err, _port = await _start_and_stop(tmp_path)
    assert "Tracing on: spans go to the local store" in out, out
    warning = next(line for line in err.splitlines() if "SLUICE_NEWCOMER_UNSET_KEY" in line)
    assert "providers.anthropic-primary.api_key" in warning and "not set" in warning
    assert "DEMO MODE" not in out
