#!/usr/bin/env bash
# The whole test suite on a fresh Debian machine: installs what the tests need (Debian packages
# for the real Slurm cluster, sshd and Docker engine; pip packages incl. a CPU torch), then runs
# pytest. The fixtures start and stop the services themselves. Usage: bash tests/ci.sh [pytest args]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { printf '[ci %s] %s\n' "$(date +%T)" "$*" >&2; }

# --- Debian packages (root only; the fixtures skip with a reason where this cannot run) ---------
debs=(slurmctld slurmd slurm-client munge openssh-server docker.io busybox-static git)
need=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || need+=("$p")
done
if ((${#need[@]})) && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  log "apt-get install ${need[*]}"
  guard=0   # keep the packages' maintainer scripts from starting system-wide daemons
  if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; guard=1; fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq -o DPkg::Lock::Timeout=300
  apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=300 "${need[@]}" >/dev/null
  ((guard)) && rm -f /usr/sbin/policy-rc.d
fi

# --- Python packages ---------------------------------------------------------------------------
log "pip install"
# (this machine's pip config names local wheel folders that may be absent: drop those warnings only)
pipq() { python -m pip install -q --disable-pip-version-check "$@" 2>&1 | { grep -v '^WARNING: Location .* is ignored' || true; }; }
pipq 'torch==2.13.0'
pipq -e '.[all,test]'

# Real services must run in CI: a fixture that cannot start them fails instead of skipping.
export NEMORUN_REQUIRE_SLURM=1
log "pytest"
# 4 workers on 2 cores: most tests wait on subprocesses and daemons; each real service runs on ONE
# worker (tests/conftest.py puts its tests in one xdist group; -n implies --dist loadgroup there)
python -m pytest -q -p no:cacheprovider -n 4 --durations=20 "$@"
