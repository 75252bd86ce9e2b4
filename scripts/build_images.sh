#!/usr/bin/env bash
# Builds the local images: pykube/pause (the infra container, from images/pause/pause.c) and
# pykube/busybox (for tests and examples, from Debian's busybox-static). No registry is needed.
set -euo pipefail
cd "$(dirname "$0")/.."
PAUSE_TAG=${PAUSE_IMAGE:-pykube/pause:3.9}
BUSYBOX_TAG=${BUSYBOX_IMAGE:-pykube/busybox:1.35}
# gcc and libc6-dev build the static pause binary; busybox-static is the test image's userland.
scripts/ensure_packages.sh gcc libc6-dev busybox-static
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp images/pause/Dockerfile "$work/"
gcc -Os -static -o "$work/pause" images/pause/pause.c
strip "$work/pause" || true
build() {  # tag, context: the legacy builder's deprecation notice is noise unless the build fails
  docker build -q -t "$1" "$2" >"$work/build.log" 2>&1 || { cat "$work/build.log" >&2; return 1; }
}
build "$PAUSE_TAG" "$work"
mkdir "$work/bb"
cp images/busybox/Dockerfile "$work/bb/"
cp /bin/busybox "$work/bb/busybox"
build "$BUSYBOX_TAG" "$work/bb"
echo "built $PAUSE_TAG and $BUSYBOX_TAG" >&2
