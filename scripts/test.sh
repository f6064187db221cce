#!/usr/bin/env bash
# Installs everything from nothing and runs the whole test suite (lint, types, tests).
# Usage: bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

CLAUDE_CODE_VERSION="${SLUICE_CLAUDE_CODE_VERSION:-2.1.197}"  # the version the fixtures came from
# An agent CLI that speaks OpenAI Chat Completions, for the /v1/chat/completions door's e2e test
# (docs/connect-openai-agents.md). Pinned: one version, installed once.
OPENCODE_VERSION="${SLUICE_OPENCODE_VERSION:-1.18.33}"

echo "== Python environment"
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'

# Two CLIs: the pinned one the fixtures came from, and the newest on npm at run time (what
# engineers run today). Each version is installed once into .cache/claude-code/<version>.
install_claude() {  # version -> path of its `claude`
  local dir=".cache/claude-code/$1"
  if [ "$("$dir/node_modules/.bin/claude" --version 2>/dev/null | cut -d' ' -f1)" != "$1" ]; then
    mkdir -p "$dir"
    [ -f "$dir/package.json" ] || echo '{"name":"sluice-test-deps","private":true}' > "$dir/package.json"
    npm install --prefix "$dir" --no-audit --no-fund --loglevel=error \
      "@anthropic-ai/claude-code@$1" >&2
  fi
  echo "$PWD/$dir/node_modules/.bin/claude"
}
if ! command -v npm >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null
fi
echo "== Claude Code CLI $CLAUDE_CODE_VERSION (pinned, npm)"
SLUICE_CLAUDE_BIN="$(install_claude "$CLAUDE_CODE_VERSION")"
export SLUICE_CLAUDE_BIN
"$SLUICE_CLAUDE_BIN" --version
NEWEST="${SLUICE_CLAUDE_CODE_NEWEST:-$(npm view @anthropic-ai/claude-code version 2>/dev/null || true)}"
NEWEST_BIN=""
if [ -z "$NEWEST" ]; then
  echo "!! the npm registry did not answer: the newest CLI is not tested in this run" >&2
elif [ "$NEWEST" != "$CLAUDE_CODE_VERSION" ]; then
  echo "== Claude Code CLI $NEWEST (newest on npm)"
  NEWEST_BIN="$(install_claude "$NEWEST")"
  "$NEWEST_BIN" --version
fi

# opencode ships its binary inside its npm packages (a postinstall links it); nothing else is
# downloaded. Installed once per version into .cache/opencode/<version>.
install_opencode() {  # version -> path of its `opencode`
  local dir=".cache/opencode/$1"
  if [ "$("$dir/node_modules/.bin/opencode" --version 2>/dev/null)" != "$1" ]; then
    mkdir -p "$dir"
    [ -f "$dir/package.json" ] || echo '{"name":"sluice-test-deps","private":true}' > "$dir/package.json"
    npm install --prefix "$dir" --no-audit --no-fund --loglevel=error "opencode-ai@$1" >&2
  fi
  echo "$PWD/$dir/node_modules/.bin/opencode"
}
echo "== opencode CLI $OPENCODE_VERSION (pinned, npm; OpenAI Chat Completions agent)"
SLUICE_OPENCODE_BIN="$(install_opencode "$OPENCODE_VERSION")"
export SLUICE_OPENCODE_BIN
"$SLUICE_OPENCODE_BIN" --version

# The console's browser tests drive Debian's Chromium through Playwright; `playwright install`
# (a browser download) is never run.
if [ ! -x /usr/bin/chromium ]; then
  echo "== Chromium (apt, for the console's browser tests)"
  apt-get update -qq && apt-get install -y -qq chromium >/dev/null
fi

echo "== Lint and types"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/lint-imports  # the layers (contracts in pyproject.toml)

echo "== Tests (Claude Code $CLAUDE_CODE_VERSION for the e2e lane)"
.venv/bin/python -m pytest "$@"
if [ -n "$NEWEST_BIN" ]; then
  echo "== End-to-end tests again, with Claude Code $NEWEST"
  SLUICE_CLAUDE_BIN="$NEWEST_BIN" .venv/bin/python -m pytest tests/e2e \
    --ignore=tests/e2e/test_openai_agent_cli.py "$@"  # opencode's tests don't use Claude Code
fi
