# pykube's entry points. `make up` runs a cluster on this host; `make test` runs every test.
# Both do all set-up on a fresh Debian/Ubuntu machine (venv, packages, Docker Engine, images).

VENV        ?= .venv
PY          := $(VENV)/bin/python
STATE       ?= .pykube
MASTER_ADDR ?= 127.0.0.1:6443
NODE_NAME   ?= $(shell hostname | tr 'A-Z' 'a-z')

.PHONY: help setup docker images proto proto-check lint test unit e2e bench up down status logs clean

help:
	@echo "make up      run pymaster + pykubelet on this host (state in $(STATE)/); make down stops them"
	@echo "make test    set up everything and run the whole test suite against the real Docker Engine"
	@echo "make proto | proto-check | images | lint | bench | status | logs"

# Debian packages the set-up needs on a fresh machine (one apt-get run): python3-venv for the
# virtualenv, gcc and libc6-dev for the static pause binary, busybox-static for the test image,
# etcd-server for the etcd store's tests, and Debian's docker.io unless a Docker Engine is
# installed already.
PACKAGES := python3-venv gcc libc6-dev busybox-static etcd-server $(shell command -v dockerd >/dev/null 2>&1 || echo docker.io)

setup:
	@scripts/ensure_packages.sh $(PACKAGES)
	@scripts/setup_venv.sh

docker:
	@scripts/ensure_docker.sh

images: docker
	@scripts/build_images.sh

proto: setup
	PYTHON=$(PY) scripts/gen_proto.sh

# Fails when the committed generated code differs from what `make proto` would produce.
proto-check: setup
	@tmp=$$(mktemp -d) && PYTHON=$(PY) scripts/gen_proto.sh $$tmp && \
	  for f in $$tmp/*; do cmp -s $$f pymaster/api/$$(basename $$f) || \
	    { echo "error: pymaster/api/$$(basename $$f) is stale: run make proto" >&2; rm -rf $$tmp; exit 1; }; done; \
	  rm -rf $$tmp

lint: setup
	$(VENV)/bin/ruff check .

unit: setup
	$(VENV)/bin/pytest tests/unit -q

e2e: setup images
	$(VENV)/bin/pytest tests/e2e -q

test: setup proto-check lint images
	$(VENV)/bin/pytest tests -q -p no:cacheprovider

bench: setup images
	$(PY) bench/pod_startup.py
	$(PY) bench/readiness.py
	$(PY) bench/scheduler.py
	$(PY) bench/controllers.py
	$(PY) bench/proxy.py
	$(PY) bench/store.py

up: setup images
	@scripts/cluster.sh up

down:
	@scripts/cluster.sh down

status:
	@scripts/cluster.sh status

logs:
	@tail -n 50 $(STATE)/*.log

clean: down
	rm -rf $(STATE)
