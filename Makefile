# bullflow developer workflow. `make help` lists every target.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export BULLFLOW_CACHE ?= $(HOME)/.cache/bullflow
PYTEST_ARGS ?=
BENCH_ARGS ?=
STRESS_RUNS ?= 3

.PHONY: help
help: ## List every target with a one-line description
	@grep -hE '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | \
	  awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}'

.PHONY: bootstrap
bootstrap: apt-deps venv npm-deps tools ## Install everything the tests need (idempotent)

.PHONY: apt-deps
apt-deps: ## Install Debian packages (redis-server) when missing
	@bash hack/apt-deps.sh

$(PY): pyproject.toml constraints.txt worker-image/pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]' -e ./worker-image
	@touch $(PY)

.PHONY: venv
venv: $(PY) ## Create the Python virtualenv (.venv) from the pinned constraints

tests/interop/node_modules/.package-lock.json: tests/interop/package-lock.json
	cd tests/interop && npm ci --no-audit --no-fund --loglevel=error

.PHONY: npm-deps
npm-deps: tests/interop/node_modules/.package-lock.json ## Install Node.js BullMQ for interop tests

.PHONY: tools
tools: ## Build etcd, kube-apiserver & co, kwok, helm and promtool from source (cached in $BULLFLOW_CACHE)
	@bash hack/build-tools.sh

.PHONY: cluster-tools
cluster-tools: ## Build only what a local cluster needs (no promtool): for demo and cluster-up
	@bash hack/build-tools.sh cluster

.PHONY: images
images: apt-deps ## Build the operator and worker images with buildah (cached; archives in $BULLFLOW_CACHE/images)
	@bash hack/build-images.sh

.PHONY: test
test: bootstrap lint images ## Lint, then every test tier (unit, integration, e2e) against real Redis and Kubernetes
	$(PY) -m pytest tests $(PYTEST_ARGS)

.PHONY: test-unit
test-unit: venv ## Run the unit tests only (no cluster, no Redis)
	$(PY) -m pytest tests/unit -m unit $(PYTEST_ARGS)

.PHONY: test-integration
test-integration: bootstrap images ## Run the integration tests (real Redis + control plane)
	$(PY) -m pytest tests/integration $(PYTEST_ARGS)

.PHONY: test-e2e
test-e2e: bootstrap images ## Run the end-to-end tests (operator + real workers; the real-pod ones need the images)
	$(PY) -m pytest tests/e2e $(PYTEST_ARGS)

.PHONY: test-stress
test-stress: bootstrap ## Every test tier STRESS_RUNS times (default 3) with stress-ng loading all cores (not in `test`)
	@STRESS_RUNS=$(STRESS_RUNS) PY=$(PY) PYTEST_ARGS='$(PYTEST_ARGS)' bash hack/stress.sh

.PHONY: test-chaos
test-chaos: bootstrap ## Faults during a 300-flow run (own cluster + Redis); convergence table in tests/chaos/results/latest.md
	$(PY) -m pytest tests/chaos $(PYTEST_ARGS)

.PHONY: bench
bench: bootstrap ## Run the full benchmark suite; writes bench/results/<date>.json and .md
	$(PY) -m bench.bullflow_bench $(BENCH_ARGS)

.PHONY: bench-smoke
bench-smoke: bootstrap ## A seconds-long run of every scenario, to keep the harness working
	$(PY) -m bench.bullflow_bench --smoke $(BENCH_ARGS)

.PHONY: lint
lint: venv ## ruff + mypy
	$(VENV)/bin/ruff check operator tests worker-image hack bench
	$(VENV)/bin/ruff format --check operator tests worker-image hack bench
	$(VENV)/bin/mypy operator/bullflow worker-image/bullflow_worker

.PHONY: fmt
fmt: venv ## Format the code with ruff
	$(VENV)/bin/ruff format operator tests worker-image hack bench
	$(VENV)/bin/ruff check --fix operator tests worker-image hack bench

.PHONY: crds
crds: venv ## Regenerate crds/ from the pydantic models
	$(PY) -m bullflow.crdgen crds

.PHONY: chart-docs
chart-docs: venv ## Regenerate charts/bullflow/README.md from the `# --` comments of values.yaml
	$(PY) hack/chart_readme.py

.PHONY: docs
docs: venv ## Regenerate docs/api.md (the API reference) from the CRDs in crds/
	$(PY) -m bullflow.apidocs crds docs/api.md

.PHONY: release-check
release-check: venv tools ## Build sdists, wheels and the chart into dist/ and check them (twine, a clean venv, helm lint)
	@PY=$(PY) bash hack/release-check.sh

.PHONY: cluster-up
cluster-up: apt-deps venv cluster-tools ## Start the local control plane + Redis in the background (REAL_NODE=1: with a real kubelet node); prints the env to use
	$(if $(REAL_NODE),@bash hack/build-tools.sh node)
	$(PY) -m tests.harness up $(if $(REAL_NODE),--real-node)

.PHONY: cluster-down
cluster-down: venv ## Stop the local control plane + Redis started by cluster-up
	$(PY) -m tests.harness down

.PHONY: demo
demo: apt-deps venv cluster-tools ## Run the demo on $KUBECONFIG's cluster if reachable, else on a local one
	$(PY) hack/demo.py

.PHONY: clean
clean: ## Remove the virtualenv and caches inside the clone (not the tool cache)
	rm -rf $(VENV) tests/interop/node_modules .pytest_cache .mypy_cache .ruff_cache
