# stac-packager: the two commands of the README, and what they need.
#   make demo   the whole chain offline on embedded defaults (CONFIG=settings.yaml for your own)
#   make test   everything CI runs (.ci/run calls it): installs, lint, the whole test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEPS_HASH := $(shell sha256sum pyproject.toml | cut -c1-12)
DEMO_STAMP := $(VENV)/.demo-$(DEPS_HASH)
TEST_STAMP := $(VENV)/.test-$(DEPS_HASH)
PIP := $(PY) -m pip install --quiet --disable-pip-version-check

.PHONY: demo test install-demo install-test system-deps lint bench ui clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(DEMO_STAMP): pyproject.toml | $(VENV)/bin/python
	$(PIP) -e '.[demo]'
	touch $@

$(TEST_STAMP): pyproject.toml | $(VENV)/bin/python
	$(PIP) -e '.[test,demo]'
	touch $@

install-demo: $(DEMO_STAMP)
install-test: $(TEST_STAMP)

demo: $(DEMO_STAMP)
	$(PY) -m demo run $(if $(CONFIG),--config $(CONFIG))

ui: $(DEMO_STAMP)
	$(PY) -m demo ui

system-deps:
	bash scripts/install-system-deps.sh
	bash scripts/get-helm.sh
	bash scripts/stacpkg-venv.sh .cache/stacpkg-venv
	bash scripts/keystone-venv.sh .cache/keystone-venv
	bash scripts/azurite.sh

lint: $(TEST_STAMP)
	$(PY) -m ruff check .

# STAC_PACKAGER_E2E=1: include the webserver + daemon end-to-end test (backfill, sensor revalidation)
test: $(TEST_STAMP) system-deps lint
	STAC_PACKAGER_E2E=1 $(PY) -m pytest

bench: $(TEST_STAMP) system-deps
	bash bench/setup.sh
	$(PY) -m bench

clean:
	rm -rf demo-output .pytest_cache .ruff_cache
