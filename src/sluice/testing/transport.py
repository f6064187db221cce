"""An in-memory transport for driving an HTTP protocol object without a socket: what the
edge protocol's tests and its CPU benchmark (``bench/edge_protocol_ab.py``) feed requests into."""

from __future__ import annotations

import asyncio
from typing import Any


class RecordingTransport(asyncio.Transport):
    """Records each ``write``/``writelines`` (each would be one send(2)); ``record=False``
    keeps nothing, for benchmarks that write thousands of responses."""

    def __init__(self, *, record: bool = True) -> None:
        super().__init__()
        self.calls: list[tuple[str, bytes]] = []
        self._record = record
        self._closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 4000), "peername": ("127.0.0.1", 5555)}.get(name)

    def write(self, data: Any) -> None:
        if self._record:
            self.calls.append(("write", bytes(data)))

    def writelines(self, list_of_data: Any) -> None:
        if self._record:
            self.calls.append(("writelines", b"".join(list_of_data)))

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        self._closing = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass
