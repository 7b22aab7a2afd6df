# Two commands for a fresh machine: `make serve` and `make test`.
PYTHON ?= python3
VENV ?= .venv
# The CPU wheel on CPU machines; never let a resolver pull the multi-GB CUDA build by accident.
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: setup services promtool chromium image-tools image-test wheel-test reference docs dist serve test lint demo clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check "$(TORCH)"
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

# `make serve MODEL=qwen3-vl-2b` (a catalogue name or a hub id) pulls the model first (resumed, or nothing fetched
# when it is there and whole), then serves it; without MODEL, the bundled demo model.
serve: setup
	$(if $(MODEL),$(BIN)/vlserve pull '$(MODEL)' && )$(BIN)/vlserve serve $(if $(MODEL),--model '$(MODEL)')

# The tests use the real PostgreSQL and Redis on loopback; start them where this machine has them but they are down.
services: promtool chromium
	@if command -v pg_isready >/dev/null && ! pg_isready -q -h 127.0.0.1 -p 5432 && [ -d /etc/postgresql ]; then \
		pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start || true; fi
	@if command -v redis-cli >/dev/null && ! redis-cli -h 127.0.0.1 ping >/dev/null 2>&1; then \
		redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no || true; fi

# promtool checks deploy/prometheus (tests/deploy). As root with apt-get, install Debian's prometheus package for it,
# quietly; a policy-rc.d that refuses (Docker images have one) keeps its daemon from starting, and it stays disabled.
promtool:
	@if ! command -v promtool >/dev/null && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		export DEBIAN_FRONTEND=noninteractive; log=$$(mktemp); policy=/usr/sbin/policy-rc.d; ours=; \
		if [ ! -e $$policy ]; then printf '#!/bin/sh\nexit 101\n' >$$policy && chmod +x $$policy && ours=1; fi; \
		install="apt-get install -y -q --no-install-recommends prometheus"; \
		$$install >$$log 2>&1 || { apt-get update -q >>$$log 2>&1 && $$install >>$$log 2>&1; } \
			|| { echo "promtool: apt-get install prometheus failed:"; tail -n 5 $$log; }; \
		[ -z "$$ours" ] || rm -f $$policy; rm -f $$log; \
		if [ -d /run/systemd/system ]; then systemctl disable --now prometheus >/dev/null 2>&1 || true; fi; fi

# The playground's browser tests (tests/e2e/test_playground.py) drive Debian's chromium with Playwright (no browser
# download: `playwright install` is never run). As root with apt-get, install it quietly where it is missing.
chromium:
	@if ! command -v chromium >/dev/null && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		export DEBIAN_FRONTEND=noninteractive; log=$$(mktemp); \
		install="apt-get install -y -q --no-install-recommends chromium"; \
		$$install >$$log 2>&1 || { apt-get update -q >>$$log 2>&1 && $$install >>$$log 2>&1; } \
			|| { echo "chromium: apt-get install chromium failed:"; tail -n 5 $$log; }; rm -f $$log; fi

# The image test (tests/deploy/test_image_build.py) builds deploy/Dockerfile.cpu with buildah and runs it with podman
# (runc: crun refuses a hybrid cgroup layout); debootstrap makes its local base image. As root with apt-get.
image-tools:
	@if ! command -v buildah >/dev/null || ! command -v podman >/dev/null || ! command -v runc >/dev/null \
		|| ! command -v debootstrap >/dev/null; then if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		export DEBIAN_FRONTEND=noninteractive; log=$$(mktemp); \
		install="apt-get install -y -q --no-install-recommends buildah podman runc debootstrap"; \
		$$install >$$log 2>&1 || { apt-get update -q >>$$log 2>&1 && $$install >>$$log 2>&1; } \
			|| { echo "image-tools: apt-get install failed:"; tail -n 5 $$log; }; rm -f $$log; fi; fi

# Minutes: the first run makes the base image and installs torch and the lock; later runs reuse cached layers.
image-test: setup image-tools
	$(BIN)/pytest -q -m image tests/deploy/test_image_build.py

# The sdist and the wheel (`python -m build`), then the wheel alone in a fresh venv: it builds the demo, serves it,
# answers a chat request and a document job, migrates a new database and serves /docs (tests/packaging/test_wheel.py).
wheel-test: setup services
	$(BIN)/pytest -q -m wheel tests/packaging/test_wheel.py

dist: setup
	$(BIN)/python -m build --outdir dist .

# The reference pages generated from the code (docs/reference/: settings, CLI, API), rewritten after a change to
# a setting, a command or a route; the suite fails on a stale one.
reference: setup
	$(BIN)/python docs/_hooks/reference.py

# The documentation site, strictly (no broken link, no page outside the nav), into site/; `$(BIN)/mkdocs serve`
# browses it at http://127.0.0.1:8000 while you edit docs/.
docs: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# The suite and, side by side with it, the CPU image built and run for real (tests/deploy/test_image_build.py:
# minutes the first time, most of them debootstrap and pip waiting on the network), then the wheel served from a
# fresh venv (tests/packaging/test_wheel.py); their log follows the suite's. The suite builds the docs site strictly.
test: setup services image-tools
	$(BIN)/ruff check src tests bench deploy docs/_hooks
	$(BIN)/ruff format --check src tests bench deploy docs/_hooks
	@mkdir -p build; log=build/image-and-wheel-test.log; \
	$(BIN)/pytest -q -p no:cacheprovider -m 'image or wheel' tests/deploy/test_image_build.py \
		tests/packaging/test_wheel.py >$$log 2>&1 & side=$$!; \
	trap 'kill $$side 2>/dev/null' INT TERM; \
	$(BIN)/pytest -q --durations=15; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; rc=0; fi; \
	wait $$side; src=$$?; echo "--- beside the suite, the CPU image built and run and the wheel served from a fresh venv:"; \
	if [ $$src -eq 0 ]; then tail -n 3 $$log; else cat $$log; fi; \
	if [ $$rc -ne 0 ]; then exit $$rc; fi; exit $$src

lint: setup
	$(BIN)/ruff check src tests bench deploy docs/_hooks
	$(BIN)/ruff format --check src tests bench deploy docs/_hooks

demo: setup
	$(BIN)/vlserve demo build

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
