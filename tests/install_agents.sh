#!/usr/bin/env bash
# Installs the agent CLIs that tests/test_agents_*.py drive — Claude Code and Codex CLI, from the
# npm registry — into tests/.agents/ (gitignored), pinned to exact versions.
#
# Idempotent: when both are already installed at these versions it only checks them and exits 0.
# `make test` runs it; tests/support_agents.py runs it too when a CLI is missing.
# Needs Node.js (20 works; Claude Code's npm package declares node>=22, but only for its
# postinstall script — the CLI itself is a native binary) and npm on PATH.
# Prints the two installed binaries' --version lines on success; exits non-zero on failure.
set -euo pipefail

CLAUDE_CODE_VERSION="2.1.332"
CODEX_VERSION="0.169.0"

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dest="${FLOWBASE_AGENTS_DIR:-$here/.agents}"
bin="$dest/node_modules/.bin"

has_version() {  # <package> <version>: is that exact version installed?
  local manifest="$dest/node_modules/$1/package.json"
  [[ -f "$manifest" ]] && grep -Eq "\"version\": *\"$2\"" "$manifest"
}

works() {  # do both CLIs run and report the pinned versions?
  [[ -x "$bin/claude" && -x "$bin/codex" ]] || return 1
  "$bin/claude" --version 2>/dev/null | grep -q "^$CLAUDE_CODE_VERSION " || return 1
  "$bin/codex" --version 2>/dev/null | grep -q " $CODEX_VERSION\$" || return 1
}

mkdir -p "$dest"
# Two test processes starting at once must not run two npm installs into one folder.
if command -v flock >/dev/null; then
  exec 9>"$dest/.install.lock"
  flock 9
fi

if has_version @anthropic-ai/claude-code "$CLAUDE_CODE_VERSION" && has_version @openai/codex "$CODEX_VERSION" && works; then
  "$bin/claude" --version
  "$bin/codex" --version
  exit 0
fi

for tool in node npm; do
  command -v "$tool" >/dev/null || { echo "install_agents.sh: $tool is not on PATH (Node.js 20+ with npm is needed)" >&2; exit 1; }
done

# A package.json of its own keeps npm from resolving against a parent folder's project, and pins
# the exact versions (the platform packages each CLI depends on are pinned exactly by the CLI).
cat > "$dest/package.json" <<JSON
{
  "name": "flowbase-test-agents",
  "private": true,
  "description": "Agent CLIs driven by flowbase's end-to-end tests; written by tests/install_agents.sh",
  "dependencies": {
    "@anthropic-ai/claude-code": "$CLAUDE_CODE_VERSION",
    "@openai/codex": "$CODEX_VERSION"
  }
}
JSON

# --engine-strict=false: Claude Code's engines field says node>=22 while its native binary runs on
# any Node (see above); a user-level engine-strict setting must not turn that warning into a failure.
# --include=optional: the native binaries come as platform-specific optional dependencies.
npm install --prefix "$dest" --no-audit --no-fund --no-update-notifier --engine-strict=false \
  --include=optional --loglevel=error

# Claude Code's postinstall copies the platform binary over its bin/claude.exe placeholder. npm
# versions that hold back install scripts leave the placeholder: run the postinstall ourselves.
if ! "$bin/claude" --version >/dev/null 2>&1; then
  (cd "$dest/node_modules/@anthropic-ai/claude-code" && node install.cjs)
fi

if ! works; then
  echo "install_agents.sh: the installed CLIs do not report the pinned versions" >&2
  "$bin/claude" --version >&2 || true
  "$bin/codex" --version >&2 || true
  exit 1
fi
"$bin/claude" --version
"$bin/codex" --version
