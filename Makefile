# aiconf: the two commands of the README are `make demo` and `make test`; both set up what they need first.
SHELL := /bin/bash
.ONESHELL:
.SHELLFLAGS := -eu -o pipefail -c

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
AICONF := $(BIN)/aiconf
# Debian packages the project needs: chromium renders the HTML report in tests; iproute2/iptables for the sandbox.
APT_PACKAGES := chromium iproute2 iptables containerd runc containernetworking-plugins conntrack busybox-static gcc libc6-dev python3.11
PYTEST_ARGS ?=

.PHONY: setup venv apt sandbox-build demo test test-unit notebooks lint clean bench

setup: apt venv sandbox-build ## everything a fresh machine needs (idempotent)

apt:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q "install ok installed" || echo $$p; done)
	if [ -n "$$missing" ]; then
	  echo "[setup] installing Debian packages: $$missing"
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO=sudo; fi
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@echo "[setup] Python environment in $(VENV)"
	[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,lab]'
	touch $@

sandbox-build: venv ## build (or reuse from ~/.cache/aiconf) the sandbox's Go components
	$(AICONF) sandbox build

demo: setup ## start the sandbox, run the whole suite, write outputs/latest/report.html, stop the sandbox
	trap '$(AICONF) sandbox down' EXIT
	$(AICONF) sandbox up
	rc=0; $(AICONF) run --profile sandbox --parallel 2 || rc=$$?
	echo "[demo] aiconf run exit code $$rc (0 = every MUST passed, 1 = some MUST did not)"
	test -f outputs/latest/report.html && echo "[demo] report: outputs/latest/report.html"
	[ $$rc -le 1 ]

test: setup ## the whole test suite; the sandbox tests start and stop their own sandbox
	rc=0; $(BIN)/pytest $(PYTEST_ARGS) || rc=$$?
	# pytest exits 5 when it collected nothing: for this project that is a broken test run, not a pass.
	if [ $$rc -eq 5 ]; then echo "[test] pytest collected no tests" >&2; exit 1; fi
	exit $$rc

test-unit: venv ## fast tests only (no sandbox)
	$(BIN)/pytest -m "not sandbox and not notebook and not report" $(PYTEST_ARGS)

notebooks: venv ## regenerate notebooks/*.ipynb (output-free) from their notebooks/*.py sources
	$(BIN)/python -m aiconf.notebooks sync

bench: venv ## quick benchmarks -> benchmarks/results/*.json
	$(BIN)/python benchmarks/run.py --quick

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
