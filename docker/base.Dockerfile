# syntax=docker/dockerfile:1.7
# trainyard base image: CUDA runtime, Python, torch (CUDA build) pinned by constraints.txt,
# and a non-root user. Package images extend it through their BASE_IMAGE build argument.
#
#   docker build -f docker/base.Dockerfile -t trainyard/base:latest .
#
# Behind a TLS-intercepting proxy, pass its CA as a build secret:
#   --secret id=ca,src=/path/to/ca.pem
ARG CUDA_IMAGE=nvidia/cuda:13.0.3-cudnn-runtime-ubuntu24.04

# ---- builder: compilers live here only --------------------------------------------------
FROM ${CUDA_IMAGE} AS builder
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        build-essential ca-certificates python3 python3-dev python3-venv \
    && rm -rf /var/lib/apt/lists/*
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    UV_NO_CACHE=1 \
    PIP_NO_CACHE_DIR=1
COPY constraints.txt ci/bootstrap-requirements.txt /opt/trainyard/
COPY ci/install.sh /opt/trainyard/ci/install.sh
RUN --mount=type=secret,id=ca,required=false \
    if [ -f /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca SSL_CERT_FILE=/run/secrets/ca; fi \
    && python3 -m venv /opt/venv \
    && pip install --constraint /opt/trainyard/constraints.txt uv \
    && bash /opt/trainyard/ci/install.sh torch==2.13.0

# ---- runtime: Python, the venv, a non-root user -----------------------------------------
FROM ${CUDA_IMAGE} AS runtime
ARG DEBIAN_FRONTEND=noninteractive
ARG USER_UID=1000
ARG USER_GID=1000
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates python3 python3-venv tini \
    && rm -rf /var/lib/apt/lists/* \
    && (userdel --remove ubuntu 2>/dev/null || true) \
    && groupadd --gid "${USER_GID}" trainer \
    && useradd --uid "${USER_UID}" --gid "${USER_GID}" --create-home --shell /bin/bash trainer \
    && mkdir -p /workspace \
    && chown trainer:trainer /workspace
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /opt/trainyard /opt/trainyard
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    UV_NO_CACHE=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 \
    HF_HOME=/workspace/.cache/huggingface \
    TRAINYARD_UID=${USER_UID} \
    TRAINYARD_GID=${USER_GID}
WORKDIR /workspace
USER ${USER_UID}:${USER_GID}
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["bash"]
