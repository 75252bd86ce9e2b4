#!/usr/bin/env bash
# Generates pymaster/api/*_pb2*.py from proto/pykube/v1/*.proto into OUT (default pymaster/api).
# protoc writes absolute imports ("from pykube.v1 import objects_pb2"); they are rewritten to
# relative ones so the generated modules live inside the pymaster.api package.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${1:-pymaster/api}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PY" -m grpc_tools.protoc -Iproto --python_out="$tmp" --pyi_out="$tmp" --grpc_python_out="$tmp" proto/pykube/v1/*.proto
rm -f "$tmp"/pykube/v1/objects_pb2_grpc.py  # objects.proto declares no service
for f in "$tmp"/pykube/v1/*.py "$tmp"/pykube/v1/*.pyi; do
  sed -E 's/^from pykube\.v1 import /from . import /' "$f" > "$OUT/$(basename "$f")"
done
