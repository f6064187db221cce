"""Say in one line that a port is taken, and which setting moves it (not a traceback)."""

from __future__ import annotations

import errno
import socket

from sluice.cli.common import fail, warn

METRICS_SETTING = "metrics.port (or metrics.enabled: false)"


def port_taken_message(host: str, port: int, setting: str) -> str:
    return f"port {port} on {host} is already in use; choose another with {setting}"


def ensure_free(host: str, port: int, setting: str, *, fatal: bool = True) -> bool:
    """Exit non-zero with one line if nothing can listen on ``host:port`` (0 is always free);
    with ``fatal=False`` the line is a warning and the answer is False.

    The server binds again right after; this check only turns the common mistake (a second
    gateway, a leftover mock) into a clear message before anything else starts.
    """
    if port == 0:
        return True
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                message = port_taken_message(host, port, setting)
            else:
                message = f"cannot listen on {host}:{port} ({exc.strerror}); change {setting}"
            if fatal:
                fail(message)
            warn(message)
            return False
    return True
