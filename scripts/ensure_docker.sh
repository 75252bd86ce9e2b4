#!/usr/bin/env bash
# Makes sure a Docker Engine answers: uses the one at DOCKER_HOST or /var/run/docker.sock if it
# answers; otherwise installs Debian's docker.io (root only) and starts dockerd in the background.
set -euo pipefail
log=${PYKUBE_DOCKERD_LOG:-/var/log/pykube-dockerd.log}

answers() { timeout 10 docker info >/dev/null 2>&1; }

if command -v docker >/dev/null 2>&1 && answers; then
  exit 0
fi
if ! command -v dockerd >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "error: no Docker Engine answers and dockerd is not installed; install Docker (Debian: apt-get install docker.io) or run as root" >&2
    exit 1
  fi
  "$(dirname "$0")/ensure_packages.sh" docker.io
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "error: no Docker Engine answers at ${DOCKER_HOST:-/var/run/docker.sock}; start dockerd (needs root)" >&2
  exit 1
fi
if ! answers; then
  echo "starting dockerd (log: $log) ..." >&2
  nohup setsid dockerd >"$log" 2>&1 </dev/null &
  for _ in $(seq 1 60); do
    answers && exit 0
    sleep 1
  done
  echo "error: dockerd did not answer within 60 s; see $log" >&2
  tail -20 "$log" >&2 || true
  exit 1
fi
