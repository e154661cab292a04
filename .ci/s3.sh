#!/usr/bin/env bash
# Installs s3s-fs, an S3-protocol server over a folder, in Rust (Apache-2.0, crates.io), for the
# S3 tests: `$EMBER_TOOLS/bin/s3s-fs` (default ~/.cache/ember-tools). 0.14.1 is the newest that
# builds with Rust 1.92+ (0.17 needs 1.96); it honours conditional puts (If-None-Match: *),
# which Delta commits and Ember's leases need. Skips when the binary is there.
set -euo pipefail
TOOLS="${EMBER_TOOLS:-$HOME/.cache/ember-tools}"
VERSION="${S3S_FS_VERSION:-0.14.1}"
if [ -x "$TOOLS/bin/s3s-fs" ]; then
  echo "s3s-fs: $("$TOOLS/bin/s3s-fs" --version 2>/dev/null || echo present) at $TOOLS/bin/s3s-fs"
  exit 0
fi
mkdir -p "$TOOLS"
# Its own target folder: its dependencies do not unify with Ember's.
CARGO_TARGET_DIR="$TOOLS/s3s-target" cargo install s3s-fs --version "$VERSION" --locked \
  --features binary --root "$TOOLS"
rm -rf "$TOOLS/s3s-target"
"$TOOLS/bin/s3s-fs" --version || true
