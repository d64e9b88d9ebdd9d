# Bridgecast: `make run` serves the demo, `make test` runs every test.
# Both set up what they need on a fresh machine (a .venv, Chromium for tests).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export BRIDGECAST_DATA_DIR ?= data

.PHONY: run test test-fast bench clean-venv browsers chromium migrate demo

$(VENV)/bin/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is needed"'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# Reinstall only when the dependencies change.
$(VENV)/.deps-run: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -e .
	@touch $@

$(VENV)/.deps-test: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $@ $(VENV)/.deps-run

migrate: $(VENV)/.deps-run
	$(PY) -m server db upgrade

demo: migrate
	$(PY) -m server demo

run: demo
	$(PY) -m server serve

# Debian's Chromium and Firefox ESR drive the browser tests (never a downloaded
# browser build); iptables drops packets on the lossy test links of the layer
# and quality tests (this kernel's tc has no netem); coturn is the TURN relay
# the TURN tests allocate on (started by the tests on 127.0.0.1 only).
browsers:
	@missing=""; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	[ -x /usr/bin/firefox-esr ] || missing="$$missing firefox-esr"; \
	[ -x /usr/bin/turnserver ] || missing="$$missing coturn"; \
	command -v iptables >/dev/null 2>&1 || [ -x /usr/sbin/iptables ] || missing="$$missing iptables"; \
	if [ -n "$$missing" ]; then \
		echo "installing from Debian:$$missing"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

chromium: browsers

test: $(VENV)/.deps-test browsers
	$(PY) -m pytest

# Benchmarks print their figures and rewrite their sections of docs/benchmarks.md.
# e.g. make bench FANOUT_ARGS="--viewers 0,1,10 --naive-viewers '' --seconds 10"
FANOUT_ARGS ?= --viewers 0,1,10,50,100,150 --naive-viewers 0,1,2,3 --seconds 15 --clear-headers
SIGNALING_ARGS ?= --endpoints 2000 --storm 200 --storm-seconds 10 --changes 10
bench: $(VENV)/.deps-test
	$(PY) -m bench.fanout $(FANOUT_ARGS)
	$(PY) -m bench.signaling $(SIGNALING_ARGS)
	$(PY) -m bench.layers
	$(PY) -m bench.recording
	$(PY) -m bench.layer_policy
	$(PY) -m bench.attendance

test-fast: $(VENV)/.deps-test
	$(PY) -m pytest -m "not e2e"

clean-venv:
	rm -rf $(VENV)
