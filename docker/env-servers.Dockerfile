# syntax=docker/dockerfile:1.7
# trainyard env-servers image: the base image, a Java runtime (ScienceWorld's simulator runs on
# the JVM) and the trainyard-env-servers package. One environment family per container, chosen
# by ENV (babyai, textcraft, sciworld, searchqa):
#
#   docker build -f docker/env-servers.Dockerfile --build-arg BASE_IMAGE=trainyard/base:latest \
#       -t trainyard/env-servers:latest .
#   docker run --rm -p 36001:36001 -e ENV=textcraft trainyard/env-servers:latest
ARG BASE_IMAGE=trainyard/base:latest
FROM ${BASE_IMAGE}
USER root
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
    && apt-get install -y --no-install-recommends default-jre-headless \
    && rm -rf /var/lib/apt/lists/*
COPY ci/models-requirements.txt /opt/trainyard/ci/models-requirements.txt
COPY packages/core /opt/trainyard/packages/core
COPY packages/env-servers /opt/trainyard/packages/env-servers
# [agents] and --with-models: the eval-runner service runs a local model (SmolLM2 by default)
RUN --mount=type=secret,id=ca,required=false \
    if [ -f /run/secrets/ca ]; then export SSL_CERT_FILE=/run/secrets/ca; fi \
    && bash /opt/trainyard/ci/install.sh --with-models "/opt/trainyard/packages/env-servers[agents]"
USER ${TRAINYARD_UID}:${TRAINYARD_GID}
# ENV names the family; ENV_OPTIONS passes its options as JSON (e.g. {"max_jvms": 8}).
ENV ENV=babyai \
    ENV_OPTIONS="" \
    ENV_PORT=36001
EXPOSE 36001
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('ENV_PORT', '36001'), timeout=4)"]
CMD ["sh", "-c", "exec env-servers serve --host 0.0.0.0 --port \"$ENV_PORT\" --env \"$ENV\" --env-options \"$ENV_OPTIONS\""]
