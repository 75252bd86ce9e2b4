#!/usr/bin/env bash
# Runs a one-host cluster in the background: pymaster (embedded SQLite, CA and keys in
# $STATE/master) and one pykubelet (node name = hostname) that joins with the master's token.
# `up` installs the master's admin config where pyctl looks ($PYKUBE_CONFIG, else
# ~/.pykube/config; a different file already there is moved aside, never overwritten) and waits
# until the node is Ready; `down` stops both (containers of pods keep running, like a stopped
# kubelet; `pyctl delete` them first if wanted).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
STATE=${STATE:-.pykube}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1:6443}
# The plaintext join port (Bootstrap service only): the master's port + 1, as both daemons default.
JOIN_ADDR=${JOIN_ADDR:-${MASTER_ADDR%:*}:$(( ${MASTER_ADDR##*:} + 1 ))}
USER_CONFIG=${PYKUBE_CONFIG:-$HOME/.pykube/config}
METRICS_ADDR=${METRICS_ADDR:-127.0.0.1:8080}
AGENT_ADDR=${AGENT_ADDR:-127.0.0.1:10250}
AGENT_METRICS_ADDR=${AGENT_METRICS_ADDR:-127.0.0.1:10255}
NODE_NAME=${NODE_NAME:-$(hostname | tr 'A-Z' 'a-z')}

running() { [ -f "$STATE/$1.pid" ] && kill -0 "$(cat "$STATE/$1.pid")" 2>/dev/null; }

start() {  # name, command...
  local name=$1
  shift
  if running "$name"; then
    echo "$name already running (pid $(cat "$STATE/$name.pid"))"
    return
  fi
  nohup setsid "$@" >>"$STATE/$name.log" 2>&1 </dev/null &
  echo $! >"$STATE/$name.pid"
  echo "started $name (pid $!, log $STATE/$name.log)"
}

wait_file() {  # path, daemon writing it
  for _ in $(seq 1 300); do
    [ -s "$1" ] && return 0
    if ! running "$2"; then
      echo "error: $2 exited before writing $1; see $STATE/$2.log" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "error: $2 did not write $1 within 30s; see $STATE/$2.log" >&2
  exit 1
}

install_config() {  # the master's admin config -> where pyctl finds it
  local admin=$STATE/master/admin.yaml
  if [ -f "$USER_CONFIG" ] && cmp -s "$admin" "$USER_CONFIG"; then
    return
  fi
  if [ -e "$USER_CONFIG" ]; then
    local backup
    backup="$USER_CONFIG.bak.$(date +%Y%m%d-%H%M%S)"
    mv "$USER_CONFIG" "$backup"
    echo "moved the previous $USER_CONFIG aside to $backup"
  fi
  mkdir -p "$(dirname "$USER_CONFIG")"
  chmod 700 "$(dirname "$USER_CONFIG")" 2>/dev/null || true
  install -m 600 "$admin" "$USER_CONFIG.tmp.$$"
  mv "$USER_CONFIG.tmp.$$" "$USER_CONFIG"
  echo "installed the admin config for pyctl: $USER_CONFIG (a copy of $admin)"
}

stop() {
  local name=$1
  if running "$name"; then
    local pid
    pid=$(cat "$STATE/$name.pid")
    kill "$pid"
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    echo "stopped $name"
  fi
  rm -f "$STATE/$name.pid"
}

case "${1:-}" in
  up)
    mkdir -p "$STATE/master" "$STATE/agent"
    start pymaster "$VENV/bin/pymaster" --data-dir "$STATE/master" --listen "$MASTER_ADDR" \
      --join-listen "$JOIN_ADDR" --metrics-addr "$METRICS_ADDR"
    # First start: the master creates its CA, admin config and join token before it serves.
    wait_file "$STATE/master/admin.yaml" pymaster
    wait_file "$STATE/master/token" pymaster
    install_config
    start pykubelet "$VENV/bin/pykubelet" --server "$MASTER_ADDR" --join-server "$JOIN_ADDR" \
      --token-file "$STATE/master/token" --node-name "$NODE_NAME" \
      --root-dir "$STATE/agent" --listen "$AGENT_ADDR" --metrics-addr "$AGENT_METRICS_ADDR"
    if ! "$VENV/bin/python" scripts/wait_node_ready.py "$MASTER_ADDR" "$NODE_NAME" 60 \
        "$STATE/master/admin.yaml"; then
      echo "error: node $NODE_NAME did not become Ready; see $STATE/pymaster.log and $STATE/pykubelet.log" >&2
      exit 1
    fi
    cat <<MSG

pykube is up: master $MASTER_ADDR (mutual TLS; join port $JOIN_ADDR; node leases on port + 2; metrics
http://$METRICS_ADDR/metrics), node $NODE_NAME Ready (agent metrics http://$AGENT_METRICS_ADDR/metrics).
pyctl uses the admin config $USER_CONFIG; the join token for more nodes is in $STATE/master/token.
  source $VENV/bin/activate
  pyctl get nodes
  pyctl apply -f examples/hello.yaml && pyctl get pods -w
Stop it with: make down
MSG
    ;;
  down)
    stop pykubelet
    stop pymaster
    ;;
  status)
    for name in pymaster pykubelet; do
      if running "$name"; then echo "$name: running (pid $(cat "$STATE/$name.pid"))"; else echo "$name: stopped"; fi
    done
    ;;
  *)
    echo "usage: $0 up|down|status" >&2
    exit 2
    ;;
esac
