# KubeAttention — the two commands that matter are `make demo` and `make test`.
# Both set themselves up on a fresh Debian machine: Debian packages (when root and absent),
# a .venv in the repo, and the Python packages from pyproject.toml.

PYTHON   ?= python3
VENV     ?= .venv
PY       := $(VENV)/bin/python
STAMP    := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
# Debian packages: Redis for the store; bcc, kernel headers and perf for the agent's eBPF and
# perf collectors; stress-ng and fio as real antagonists in tests.
EBPF_DEBS := python3-bpfcc linux-headers-amd64 linux-perf
DEMO_ONCE ?=
# A vendored subset of Tetragon's API: generated into agent/tetragon/ (see proto/tetragon/api.proto).
TETRAGON_PROTOS := $(shell find proto/tetragon -name '*.proto' | sed 's|^proto/||' | sort)

.PHONY: help loadgen setup system-deps ebpf-deps venv-bcc demo test proto bench bench-extender bench-agent bench-sizing soak train train-calibrated calibrate evaluate bench-models recordings certs clean

help:
	@echo "make demo        run redis, the aggregator and agents on this machine; print BatchScore (DEMO_ONCE=1: once)"
	@echo "make test        the whole test suite (what CI runs)"
	@echo "make bench       BatchScore latency benchmark (bench/batchscore.py)"
	@echo "make bench-extender  scheduler-extender latency beside BatchScore (bench/extender.py)"
	@echo "make bench-agent the agent's own CPU and memory, idle and under a context-switch storm"
	@echo "make bench-sizing  aggregator RSS/CPU and Redis memory per node, for deploy/ requests and limits"
	@echo "make soak        5 000 simulated agents at 1 Hz + BatchScore at 100/s for 10 min (SOAK_SECONDS=600)"
	@echo "make proto       regenerate the gRPC stubs in wire/v1 from proto/"
	@echo "make train       retrain the synthetic-only model (inference/models/synthetic-mlp.onnx)"
	@echo "make calibrate   re-record scorer/data/calibration with real victims and stress-ng (~30 min a repetition, in locked chunks, resumable)"
	@echo "make evaluate    held-out evaluation over fold seeds $(EVAL_SEEDS) against scheduler baselines (scorer/data/evaluation/)"
	@echo "make train-calibrated  train the calibrated models, then the gate: promote calibrated-xgboost-fast to default.onnx or refuse"
	@echo "make bench-models  MLP vs XGBoost vs fast XGBoost: training time, ONNX size, inference p50/p99 (bench/models.py)"
	@echo "make recordings  re-record the replayed node states with stress-ng (takes ~2 min)"
	@echo "make certs       development CA + aggregator, node and scheduler certificates in certs/ (CERT_NODES=a,b,c)"

system-deps:
	@missing=""; for b in redis-server:redis-server redis-cli:redis-tools stress-ng:stress-ng fio:fio h2load:nghttp2-client; do \
	  command -v $${b%%:*} >/dev/null 2>&1 || missing="$$missing $${b##*:}"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "missing:$$missing — install them (apt-get install$$missing) and retry" >&2; exit 1; fi; \
	fi

# eBPF prerequisites (best effort: where they cannot be had, the agent reports those metrics
# missing and the kernel tests skip with the reason): bcc from Debian, kernel headers linked
# where bcc looks for them, tracefs mounted.
ebpf-deps:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  dpkg -s $(EBPF_DEBS) >/dev/null 2>&1 || { apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(EBPF_DEBS) >/dev/null || \
	    echo "ebpf-deps: could not install $(EBPF_DEBS); eBPF metrics will be reported missing" >&2; }; \
	  k=$$(uname -r); hdr=$$(ls -d /usr/src/linux-headers-*-amd64 2>/dev/null | sort -V | tail -1); \
	  if [ ! -e /lib/modules/$$k/build/include ] && [ -n "$$hdr" ]; then \
	    mkdir -p /lib/modules/$$k && ln -sfn $$hdr /lib/modules/$$k/build && \
	    ln -sfn $${hdr%-amd64}-common /lib/modules/$$k/source && \
	    echo "ebpf-deps: linked $$hdr as the headers of kernel $$k"; fi; \
	  mountpoint -q /sys/kernel/tracing || mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null || \
	    echo "ebpf-deps: could not mount tracefs at /sys/kernel/tracing" >&2; \
	else echo "ebpf-deps: not root or no apt-get; eBPF metrics will be reported missing" >&2; fi

# bcc is Debian's (python3-bpfcc, pure Python over libbcc): link just that package into the venv.
venv-bcc: $(STAMP)
	@site=$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'); \
	if [ -d /usr/lib/python3/dist-packages/bcc ]; then ln -sfn /usr/lib/python3/dist-packages/bcc $$site/bcc; fi

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,train]'
	@rm -f $(VENV)/.installed-*; touch $@

# The calibration's open-loop load generator (loadgen/, Go standard library only): built into the
# venv when Go is on PATH; without it the latency-critical victim says how to get it.
LOADGEN_BIN := $(VENV)/bin/ka-loadgen
$(LOADGEN_BIN): loadgen/go.mod $(wildcard loadgen/*.go) | $(STAMP)
	@if ! command -v go >/dev/null && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing Debian's golang-go for loadgen/"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-go >/dev/null || true; fi
	@if command -v go >/dev/null; then cd loadgen && GOFLAGS=-mod=mod go build -trimpath -o ../$(LOADGEN_BIN) . && echo "built $(LOADGEN_BIN)"; \
	else echo "loadgen: no Go on PATH; the latency-critical calibration victim needs $(LOADGEN_BIN) (apt-get install golang-go)" >&2; fi
loadgen: $(LOADGEN_BIN)

setup: system-deps ebpf-deps $(STAMP) venv-bcc $(LOADGEN_BIN)

demo: setup
	$(VENV)/bin/kubeattention demo $(if $(DEMO_ONCE),--once,)

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) bench/batchscore.py

bench-extender: setup
	$(PY) bench/extender.py

bench-agent: setup
	$(PY) bench/agent_overhead.py

bench-sizing: setup
	flock /tmp/ka-heavy.lock $(PY) bench/sizing.py

SOAK_SECONDS ?= 600
soak: setup
	flock /tmp/ka-heavy.lock $(PY) bench/soak.py --seconds $(SOAK_SECONDS)

proto: setup
	$(PY) proto/generate.py
	$(PY) -m grpc_tools.protoc -Iproto --python_out=agent --pyi_out=agent $(TETRAGON_PROTOS)

# The synthetic-only model (no measured rows): what `--compare` shows calibration changed.
train: setup
	$(VENV)/bin/kubeattention train --model mlp --out inference/models/synthetic-mlp.onnx

# The order that reproduces the committed data, report and default: make calibrate, make
# evaluate, make train-calibrated. The gate (kubeattention promote) reads the committed
# evaluation and refuses, with the figures, a model that does not beat the baselines.
CALIBRATED_KINDS := mlp xgboost xgboost-fast
train-calibrated: setup
	@for k in $(CALIBRATED_KINDS); do \
	  $(VENV)/bin/kubeattention train --model $$k --data scorer/data/calibration --out inference/models/calibrated-$$k.onnx || exit 1; done
	$(VENV)/bin/kubeattention promote inference/models/calibrated-xgboost-fast.onnx --report scorer/data/evaluation/report.json

# Locked chunks of <= 15 min (exit 3 = runs left), a pause between them so others get the lock.
CAL_REPEATS ?= 2
calibrate: setup
	until flock /tmp/ka-heavy.lock $(VENV)/bin/kubeattention calibrate --out scorer/data/calibration --repeats $(CAL_REPEATS) \
	  --run-seconds 5 --warmup-seconds 8 --state-seconds 3 --alone-every 10 --max-minutes 12.5 --no-progress; \
	  do [ $$? -eq 3 ] || exit 1; echo "calibrate: chunk done, resuming in 30 s"; sleep 30; done

EVAL_SEEDS ?= 0-4
evaluate: setup
	flock /tmp/ka-heavy.lock $(VENV)/bin/kubeattention evaluate --seeds $(EVAL_SEEDS) --report scorer/data/evaluation \
	  --compare inference/models/synthetic-mlp.onnx

bench-models: setup
	flock /tmp/ka-heavy.lock $(PY) bench/models.py

recordings: setup
	@command -v stress-ng >/dev/null || (apt-get update -qq && apt-get install -y -qq stress-ng fio >/dev/null)
	bash agent/recordings/record.sh

# Development PKI for mTLS (kubeattention certs): an existing CA in $(CERTS_DIR) is reused.
CERTS_DIR  ?= certs
CERT_NODES ?= $(shell hostname | tr A-Z a-z)
certs: setup
	$(VENV)/bin/kubeattention certs --out $(CERTS_DIR) --nodes $(CERT_NODES)

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
