#!/usr/bin/env bash
# Installs the database servers the import tests start (in temporary folders, on free ports):
# MariaDB (mariadbd, mariadb-install-db, the mariadb client) and PostgreSQL 15 (initdb,
# postgres, psql), from Debian's packages. Debian's service start is skipped: the tests run
# their own servers. Skips what is there.
set -euo pipefail
need=()
command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || need+=(mariadb-server mariadb-client)
[ -x /usr/lib/postgresql/15/bin/initdb ] || need+=(postgresql postgresql-client)
# util-linux: setpriv (the database servers run as an unprivileged user), unshare and nsenter
# (the disk-full tests mount a small tmpfs in a private mount namespace).
{ command -v setpriv && command -v unshare && command -v nsenter; } >/dev/null 2>&1 || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update >&2 || true
  # No service start inside a build (policy-rc.d 101): the tests start their own servers.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}" >&2
  rm -f /usr/sbin/policy-rc.d
fi
/usr/sbin/mariadbd --version
/usr/lib/postgresql/15/bin/postgres --version
