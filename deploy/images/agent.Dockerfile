# The node agent: `kubeattention agent`, with bcc (Debian's python3-bpfcc) for the eBPF collectors.
#
# Build from the repository root:
#   docker build -f deploy/images/agent.Dockerfile -t kubeattention/agent:0.1.0 .
#
# Runs as root with a narrow capability set granted by the DaemonSet (deploy/base/agent/):
# loading eBPF and opening perf counters needs CAP_BPF + CAP_PERFMON, which Kubernetes only
# grants to uid 0. Kernel headers are not baked in: they must match the node's kernel, so
# the DaemonSet mounts the host's /lib/modules and /usr/src.

# ---- build: a virtualenv with kubeattention and its runtime dependencies
FROM python:3.11.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/kubeattention
WORKDIR /src
COPY pyproject.toml README.md ./
# Every package of [tool.setuptools.packages.find] (tests/test_deploy_images.py checks the list).
COPY wire/ wire/
COPY inference/ inference/
COPY kubeapi/ kubeapi/
COPY bpf/ bpf/
COPY agent/ agent/
COPY aggregator/ aggregator/
COPY scorer/ scorer/
COPY client/ client/
COPY scheduling/ scheduling/
COPY contention_lab/ contention_lab/
COPY controllers/ controllers/
COPY kubeattention/ kubeattention/
# Not editable: the eBPF C sources are package data of `bpf` (agent/ebpf/probes.py find_sources finds them
# with bpf.source_dir()), so they land in the venv's site-packages with the code. Fail the
# build, not the pod, when they did not.
RUN /opt/kubeattention/bin/pip install . \
 && /opt/kubeattention/bin/python -c "import agent, bpf; assert bpf.program_names() and (bpf.source_dir() / bpf.COMMON_HEADER).is_file(), bpf.source_dir()"

# ---- runtime
FROM python:3.11.11-slim-bookworm
# python3-bpfcc brings Debian's /usr/bin/python3 with bcc and libbcc (LLVM). The agent's
# short-lived compile helper runs under that interpreter (agent/ebpf/compile_helper.py, chosen by agent/ebpf/probes.py bcc_python),
# so LLVM never stays in the agent's memory.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-bpfcc \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/kubeattention /opt/kubeattention
ENV PATH=/opt/kubeattention/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
EXPOSE 9101
ENTRYPOINT ["/opt/kubeattention/bin/kubeattention"]
CMD ["agent"]
