"""YAML loading with ``${ENV}`` expansion, reporting every problem with its path in the file."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from sluice.config.models import SluiceConfig
from sluice.config.providers import PROVIDER_TYPES

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
# Nodes a document may have once its aliases are expanded: a config is a few hundred, while
# a "billion laughs" (aliases of aliases) is refused before anything walks its expansion.
MAX_YAML_NODES = 100_000


@dataclass(frozen=True)
class ConfigProblem:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ConfigProblems(Exception):
    """Raised with every problem found, not just the first."""

    def __init__(self, source: str, problems: list[ConfigProblem]) -> None:
        super().__init__(f"{source}: " + "; ".join(str(p) for p in problems))
        self.source = source
        self.problems = problems


def _expand(node: Any, env: Mapping[str, str]) -> Any:
    """Expand ``${VAR}`` / ``${VAR:-default}`` in strings; a string that was only an unset
    variable becomes null, so optional secrets can be left unset."""
    if isinstance(node, dict):
        return {k: _expand(v, env) for k, v in node.items()}
    if isinstance(node, list):
        return [_expand(v, env) for v in node]
    if isinstance(node, str):
        whole = _ENV.fullmatch(node)
        if whole and whole.group(1) not in env and whole.group(2) is None:
            return None
        return _ENV.sub(lambda m: env.get(m.group(1), m.group(2) or ""), node)
    return node


def problems_from_validation(err: ValidationError) -> list[ConfigProblem]:
    out = []
    for item in err.errors():
        loc = list(item["loc"])
        # A provider's union tag (its `type`) is not a key in the file: leave it out.
        if len(loc) > 2 and loc[0] == "providers" and loc[2] in PROVIDER_TYPES:
            del loc[2]
        path = ".".join(str(part) for part in loc)
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown field"
        out.append(ConfigProblem(path, message))
    return out


def _expanded_size(node: yaml.Node, sizes: dict[int, int], limit: int) -> int:
    """How many nodes ``node`` stands for once every alias is expanded (aliases share the
    node they name, so each node is counted once and its size reused)."""
    known = sizes.get(id(node))
    if known is not None:
        if known < 0:
            raise ValueError("an alias refers to itself (a recursive structure)")
        return known
    sizes[id(node)] = -1
    total = 1
    if isinstance(node, yaml.SequenceNode):
        children: list[yaml.Node] = list(node.value)
    elif isinstance(node, yaml.MappingNode):
        children = [part for pair in node.value for part in pair]
    else:
        children = []
    for child in children:
        total += _expanded_size(child, sizes, limit)
        if total > limit:
            raise ValueError(f"aliases expand to more than {limit} nodes")
    sizes[id(node)] = total
    return total


def load_yaml(text: str, source: str) -> Any:
    """``yaml.safe_load`` with alias expansion bounded by ``MAX_YAML_NODES``."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_size(node, {}, MAX_YAML_NODES)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else ""
        raise ConfigProblems(source, [ConfigProblem(where, f"invalid YAML: {exc}")]) from exc
    except (ValueError, RecursionError) as exc:
        why = str(exc) if isinstance(exc, ValueError) else "nested too deeply"
        raise ConfigProblems(source, [ConfigProblem("", f"refused YAML: {why}")]) from exc
    finally:
        loader.dispose()


def parse_config(
    text: str, source: str = "<config>", env: Mapping[str, str] | None = None
) -> SluiceConfig:
    raw = load_yaml(text, source)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigProblems(source, [ConfigProblem("", "the top level must be a mapping")])
    expanded = _expand(raw, os.environ if env is None else env)
    try:
        return SluiceConfig.model_validate(expanded)
    except ValidationError as exc:
        raise ConfigProblems(source, problems_from_validation(exc)) from exc


def default_config_path() -> Path | None:
    """``$SLUICE_CONFIG``, then ``./sluice.yaml``; None when neither exists."""
    env_path = os.environ.get("SLUICE_CONFIG")
    if env_path:
        return Path(env_path)
    local = Path("sluice.yaml")
    return local if local.exists() else None


def load_config(path: Path | str | None = None) -> SluiceConfig:
    chosen = Path(path) if path is not None else default_config_path()
    if chosen is None:
        return SluiceConfig()
    if not chosen.exists():
        raise ConfigProblems(str(chosen), [ConfigProblem("", "file not found")])
    return parse_config(chosen.read_text(encoding="utf-8"), str(chosen))
