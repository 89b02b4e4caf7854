# regkeeper: the commands the README names.
#
#   make demo    install what the demo needs, then run the nightly flow against a local
#                registry full of sample images (see app/demo/); prints where the
#                reports are and how to open the Prefect UI
#   make test    installs what the tests need when something is missing (scripts/install-test-deps:
#                Debian packages with apt-get, sudo when not root; pip install -e ".[dev]"), then
#                runs the test command CI runs (python -m pytest -q)
#   make test-deps  only the install step (CI's .ci/run calls the same script)
#   make lint    the linters CI runs before the tests: ruff check, ruff format --check, mypy
#   make serve   serve every deployment from this process (deployments/serve.py)
#   make deploy  register deployments/prefect.yaml with a Prefect server (Kubernetes work pool)
#
# Variables: PYTHON (default python3; e.g. PYTHON=.venv/bin/python), WORKDIR (demo directory,
# default ./regkeeper-demo), KEEP_RUNNING=1 (leave the demo registries up afterwards).

PYTHON ?= python3
REGISTRY_BIN := /usr/bin/docker-registry
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1

.PHONY: demo test test-deps lint install registry-binary serve deploy work-pool clean-demo

install:
	$(PYTHON) -m pip install -q -e ".[dev]"

# Debian's docker-registry (CNCF distribution 2.8). The package starts its own service on :5000;
# the demo and the tests never use it (they run their own on free 127.0.0.1 ports), so stop it.
registry-binary:
	@if [ ! -x $(REGISTRY_BIN) ]; then \
	  echo "installing docker-registry (Debian package) ..."; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends docker-registry >/dev/null && \
	  { $(SUDO) systemctl stop docker-registry >/dev/null 2>&1 || $(SUDO) service docker-registry stop >/dev/null 2>&1 || true; }; \
	fi

demo: install registry-binary
	$(PYTHON) -m app.cli demo $(if $(WORKDIR),--workdir $(WORKDIR)) $(if $(KEEP_RUNNING),--keep-running)

test-deps:
	PYTHON=$(PYTHON) bash scripts/install-test-deps

test: test-deps
	$(PYTHON) -m pytest -q

# configured in pyproject.toml ([tool.ruff], [tool.mypy]); ruff and mypy come with `make install`
lint:
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .
	$(PYTHON) -m mypy

serve:
	$(PYTHON) -m app.cli serve

work-pool:
	$(PYTHON) -m prefect work-pool create regkeeper --type kubernetes --overwrite \
	  --base-job-template deployments/kubernetes/base-job-template.json

deploy:
	$(PYTHON) -m prefect --no-prompt deploy --all --prefect-file deployments/prefect.yaml

clean-demo:
	rm -rf $(or $(WORKDIR),regkeeper-demo)
