#!/usr/bin/env bash
# Installs tansu, a Kafka-protocol broker in Rust (Apache-2.0), for the streaming tests:
# `$EMBER_TOOLS/bin/tansu` (default ~/.cache/ember-tools). The sqlite storage engine is a
# feature (the default features have none). Skips when the binary is there; a cold build takes
# 15-20 minutes on 2 cores. See ../shared/infra/README.md for why tansu and which engine.
set -euo pipefail
TOOLS="${EMBER_TOOLS:-$HOME/.cache/ember-tools}"
VERSION="${TANSU_VERSION:-0.6.0}"
if [ -x "$TOOLS/bin/tansu" ]; then
  echo "tansu: $("$TOOLS/bin/tansu" --version 2>/dev/null || echo present) at $TOOLS/bin/tansu"
  exit 0
fi
mkdir -p "$TOOLS"
# Its own target folder: tansu's dependencies do not unify with Ember's.
CARGO_TARGET_DIR="$TOOLS/tansu-target" cargo install tansu --version "$VERSION" --locked \
  --features libsql --root "$TOOLS"
rm -rf "$TOOLS/tansu-target"
"$TOOLS/bin/tansu" --version || true
