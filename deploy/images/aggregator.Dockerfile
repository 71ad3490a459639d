# The aggregator (`kubeattention aggregator`), also used for `kubeattention collector` and
# `kubeattention rebalance`. Non-root, no extra packages; the ONNX model ships inside the
# inference package (inference/models/default.onnx, package data).
#
# Build from the repository root:
#   docker build -f deploy/images/aggregator.Dockerfile -t kubeattention/aggregator:0.1.0 .

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
# Fail the build, not the pod, when the model did not make it into the package: load it.
RUN /opt/kubeattention/bin/pip install . \
 && /opt/kubeattention/bin/python -c "from inference.model import InterferenceModel; print(InterferenceModel.load())"

# ---- runtime
FROM python:3.11.11-slim-bookworm
COPY --from=build /opt/kubeattention /opt/kubeattention
ENV PATH=/opt/kubeattention/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# 65532: the conventional "nonroot" uid; the Deployment sets runAsNonRoot as well.
USER 65532:65532
EXPOSE 50051 8080
ENTRYPOINT ["/opt/kubeattention/bin/kubeattention"]
CMD ["aggregator"]
