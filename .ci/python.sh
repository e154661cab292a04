#!/usr/bin/env bash
# Python peers the tests use to check Ember with software nobody here wrote: DuckDB reads the
# Parquet Ember writes; the ADBC Flight SQL driver (with pyarrow and pandas) queries Ember's
# Flight SQL endpoint; Selenium drives headless Chromium for the web UI tests; deltalake (delta-rs's
# Python package) reads the Delta tables Ember commits.
# Installed idempotently into a venv outside the clone.
set -euo pipefail
VENV="${EMBER_VENV:-$HOME/.cache/ember-tools/venv}"
REQUIREMENTS=(
  "duckdb==1.5.6"
  "adbc-driver-flightsql==1.13.0"
  "adbc-driver-manager==1.13.0"
  "pyarrow==26.0.1"
  "pandas==3.1.1"
  "selenium==4.50.0"
  "deltalake==1.6.6"
)
marker="$VENV/.ember-requirements"
wanted="$(printf '%s\n' "${REQUIREMENTS[@]}")"
if [ -x "$VENV/bin/python" ] && [ -f "$marker" ] && [ "$(cat "$marker")" = "$wanted" ]; then
  echo "Python tools already installed in $VENV"
  exit 0
fi
if ! python3 -m venv "$VENV" 2>/dev/null; then
  # Debian's python3 without python3-venv: install it.
  apt-get install -y python3-venv >&2
  python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install --quiet --disable-pip-version-check "${REQUIREMENTS[@]}" >&2
echo "$wanted" > "$marker"
echo "Python tools installed in $VENV"
