#!/usr/bin/env bash
# Runs a one-host cluster in the background: pymaster (embedded SQLite in $STATE/master) and one
# pykubelet (node name = hostname). `up` waits until the node is Ready; `down` stops both
# (containers of pods keep running, like a stopped kubelet; `pyctl delete` them first if wanted).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
STATE=${STATE:-.pykube}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1:6443}
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
      --metrics-addr "$METRICS_ADDR"
    start pykubelet "$VENV/bin/pykubelet" --server "$MASTER_ADDR" --node-name "$NODE_NAME" \
      --root-dir "$STATE/agent" --listen "$AGENT_ADDR" --metrics-addr "$AGENT_METRICS_ADDR"
    if ! "$VENV/bin/python" scripts/wait_node_ready.py "$MASTER_ADDR" "$NODE_NAME" 60; then
      echo "error: node $NODE_NAME did not become Ready; see $STATE/pymaster.log and $STATE/pykubelet.log" >&2
      exit 1
    fi
    cat <<MSG

pykube is up: master $MASTER_ADDR (metrics http://$METRICS_ADDR/metrics), node $NODE_NAME Ready
(agent metrics http://$AGENT_METRICS_ADDR/metrics).
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
