# KubeAttention — the two commands that matter are `make demo` and `make test`.
# Both set themselves up on a fresh Debian machine: Debian packages (when root and absent),
# a .venv in the repo, and the Python packages from pyproject.toml.

PYTHON   ?= python3
VENV     ?= .venv
PY       := $(VENV)/bin/python
STAMP    := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
DEB_PKGS := redis-server redis-tools
DEMO_ONCE ?=
PROTOS   := $(shell find proto -name '*.proto' | sed 's|^proto/||' | sort)

.PHONY: help setup system-deps demo test proto bench train recordings clean

help:
	@echo "make demo        run redis, the aggregator and agents on this machine; print BatchScore (DEMO_ONCE=1: once)"
	@echo "make test        the whole test suite (what CI runs)"
	@echo "make bench       BatchScore latency benchmark (bench/batchscore.py)"
	@echo "make proto       regenerate the gRPC stubs in kubeattention/v1 from proto/"
	@echo "make train       retrain the shipped model (scorer/models/default.onnx)"
	@echo "make recordings  re-record the replayed node states with stress-ng (takes ~2 min)"

system-deps:
	@missing=""; for b in redis-server:redis-server redis-cli:redis-tools; do \
	  command -v $${b%%:*} >/dev/null 2>&1 || missing="$$missing $${b##*:}"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "missing:$$missing — install them (apt-get install$$missing) and retry" >&2; exit 1; fi; \
	fi

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,train]'
	@rm -f $(VENV)/.installed-*; touch $@

setup: system-deps $(STAMP)

demo: setup
	$(VENV)/bin/kubeattention demo $(if $(DEMO_ONCE),--once,)

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) bench/batchscore.py

proto: setup
	$(PY) -m grpc_tools.protoc -Iproto --python_out=. --pyi_out=. --grpc_python_out=. $(PROTOS)

train: setup
	$(VENV)/bin/kubeattention train --model mlp --out scorer/models/default.onnx

recordings: setup
	@command -v stress-ng >/dev/null || (apt-get update -qq && apt-get install -y -qq stress-ng fio >/dev/null)
	bash agent/recordings/record.sh

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
