"""Tables that fit the terminal without cutting what the user types next.

Ids, display prefixes and other columns marked ``keep`` are never truncated or wrapped; when
the terminal is narrow, optional columns are dropped (highest ``drop`` first) and the rest
wrap. Every cell is stored text, so control characters are shown escaped (``\\x1b``), never
sent to the terminal, and no cell is read as rich markup.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from rich.console import Console
from rich.table import Table
from rich.text import Text

from sluice.cli.common import console as default_console

# C0, DEL, C1, and the bidirectional overrides that can make text read differently.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def clean(value: object) -> str:
    """Stored text made safe for a terminal: control characters become visible escapes."""
    text = "-" if value is None else str(value)
    return _UNSAFE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


@dataclass(frozen=True)
class Col:
    header: str
    keep: bool = False  # the user types it next (an id, a prefix): never cut, never dropped
    drop: int = 0  # narrow terminal: columns with the highest value go first; 0 = never
    justify: Literal["left", "right"] = "left"


def _width(widths: Sequence[int]) -> int:
    """A rich table's width: cells plus one space of padding each side plus the borders."""
    return sum(widths) + 3 * len(widths) + 1


def print_table(
    cols: Sequence[Col], rows: Sequence[Sequence[object]], out: Console | None = None
) -> None:
    out = out or default_console
    cells = [[clean(v) for v in row] for row in rows]
    widths = [max([len(c.header), *(len(r[i]) for r in cells)]) for i, c in enumerate(cols)]
    shown = list(range(len(cols)))
    for i in sorted((i for i, c in enumerate(cols) if c.drop), key=lambda i: -cols[i].drop):
        if _width([widths[j] for j in shown]) <= out.width:
            break
        shown.remove(i)
    table = Table()
    for i in shown:
        col = cols[i]
        if col.keep:
            table.add_column(col.header, no_wrap=True, min_width=widths[i], justify=col.justify)
        else:
            table.add_column(col.header, overflow="fold", justify=col.justify)
    for row in cells:
        table.add_row(*(Text(row[i]) for i in shown))
    needed = _width(
        [widths[i] for i in shown if cols[i].keep] + [1] * sum(1 for i in shown if not cols[i].keep)
    )
    if needed > out.width:  # even the kept columns do not fit: let the terminal wrap lines
        out = Console(width=needed, file=out.file)
    out.print(table)
