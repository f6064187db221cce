#!/usr/bin/env bash
# Installs everything from nothing and runs the whole test suite (lint, types, tests).
# Usage: bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

CLAUDE_CODE_VERSION="${SLUICE_CLAUDE_CODE_VERSION:-2.1.197}"  # the version the fixtures came from

echo "== Python environment"
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'

echo "== Claude Code CLI $CLAUDE_CODE_VERSION (npm)"
if ! command -v npm >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null
fi
CLAUDE_DIR=.cache/claude-code
if [ "$("$CLAUDE_DIR/node_modules/.bin/claude" --version 2>/dev/null | cut -d' ' -f1)" != "$CLAUDE_CODE_VERSION" ]; then
  mkdir -p "$CLAUDE_DIR"
  [ -f "$CLAUDE_DIR/package.json" ] || echo '{"name":"sluice-test-deps","private":true}' > "$CLAUDE_DIR/package.json"
  npm install --prefix "$CLAUDE_DIR" --no-audit --no-fund --loglevel=error \
    "@anthropic-ai/claude-code@$CLAUDE_CODE_VERSION"
fi
export SLUICE_CLAUDE_BIN="$PWD/$CLAUDE_DIR/node_modules/.bin/claude"
"$SLUICE_CLAUDE_BIN" --version

echo "== Lint and types"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/lint-imports  # the layers (contracts in pyproject.toml)

echo "== Tests"
exec .venv/bin/python -m pytest "$@"
