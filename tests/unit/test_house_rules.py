"""Rules of the code base that a reviewer would otherwise have to check by eye (issue #12):
no function in the gateway longer than 60 lines and no module longer than 400 (``testing/``,
the fakes, is exempt)."""

from __future__ import annotations

import ast
from pathlib import Path

import sluice

MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 400
SOURCE = Path(sluice.__file__).parent


def _gateway_modules() -> list[Path]:
    return [
        path
        for path in sorted(SOURCE.rglob("*.py"))
        if "testing" not in path.relative_to(SOURCE).parts
    ]


def _long_functions() -> list[str]:
    found = []
    for path in _gateway_modules():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    found.append(f"{path.relative_to(SOURCE)}:{node.lineno} {node.name} ({lines})")
    return found


def test_no_function_is_longer_than_60_lines() -> None:
    assert _long_functions() == []


def test_no_module_is_longer_than_400_lines() -> None:
    long = {
        str(path.relative_to(SOURCE)): lines
        for path in _gateway_modules()
        if (lines := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}


def test_the_rule_sees_every_module() -> None:
    """The walk reads the package itself (not an empty or stale copy)."""
    assert (SOURCE / "core" / "exchange.py").exists()
    assert len(list(SOURCE.rglob("*.py"))) > 100
