# The newcomer's path: `make demo` and `make test` set up everything they need
# (Debian packages when run as root, a virtualenv with the Python packages) and run.

SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)

# Debian packages the demo and the tests use: Python itself, Go and a C toolchain
# (examples, goaci with cgo), gpg (signatures), a static busybox (runtime tests), the v2
# registry and skopeo (docker2aci, push), containerd and runc (running pushed images),
# htpasswd (registry basic auth), openssl (test certificates), ip/iptables (pod networks).
DEB_PACKAGES := python3 python3-venv python3-pip golang-go gcc libc6-dev gnupg busybox-static \
	docker-registry skopeo containerd runc apache2-utils openssl util-linux iproute2 iptables \
	tar gzip xz-utils bzip2 zstd

.PHONY: demo test check lint typecheck unit bench bench-quick system-deps bench-deps venv clean

# Install the Debian packages of $(1) that are missing (as root; otherwise name them).
define install_missing
	@missing=""; for p in $(1); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "installing Debian packages:$$missing"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
		else \
			echo "missing Debian packages (run as root to install them):$$missing" >&2; \
		fi; \
	fi
endef

system-deps:
	$(call install_missing,$(DEB_PACKAGES))

# The bench also prints systemd-nspawn's start of a container beside rkt run's.
bench-deps:
	$(call install_missing,systemd-container)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q --upgrade pip 'setuptools>=77' wheel
	$(BIN)/python -m pip install -q -e '.[test,fast]'
	touch $@

# Byte-compile what changed since the last run: with PYTHONDONTWRITEBYTECODE set, every
# start of a tool would compile its stale modules anew (and the bench would measure it).
venv: $(VENV)/.installed
	@$(BIN)/python -m compileall -q appc tools >/dev/null

demo: system-deps venv
	examples/hello/demo.sh build/demo

lint: venv
	$(BIN)/ruff check appc tools tests bench

# mypy cannot follow setuptools' package-dir mapping (tools/ is imported as appc_tools):
# give it a path where appc_tools is a link to tools/.
typecheck: venv
	@mkdir -p build/mypy && ln -sfn ../../tools build/mypy/appc_tools
	MYPYPATH=build/mypy $(BIN)/mypy -p appc -p appc_tools

unit: venv
	$(BIN)/python -m pytest -q appc tests

test: system-deps venv typecheck lint unit

bench: system-deps bench-deps venv
	$(BIN)/python bench/run.py $(BENCH_ARGS)

bench-quick: system-deps bench-deps venv
	$(BIN)/python bench/run.py --quick

clean:
	rm -rf build $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis
