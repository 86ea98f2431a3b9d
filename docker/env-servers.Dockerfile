# syntax=docker/dockerfile:1.7
# trainyard env-servers image: the base image, a Java runtime (ScienceWorld's simulator runs on
# the JVM), the trainyard-env-servers package with its image extras ([tool.trainyard] in its
# pyproject, read by ci/packages.py as docker/package.Dockerfile does) and the shipped model.
# One environment family per container, chosen by ENV (babyai, textcraft, sciworld, searchqa):
#
#   docker build -f docker/env-servers.Dockerfile --build-arg BASE_IMAGE=trainyard/base:latest \
#       -t trainyard/env-servers:latest .
#   docker run --rm -p 36001:36001 -e ENV=textcraft trainyard/env-servers:latest
ARG BASE_IMAGE=trainyard/base:latest

# ---- sources (as the base's non-root user): env-servers and the packages it needs ----------
FROM ${BASE_IMAGE} AS sources
COPY ci/packages.py /tmp/trainyard/ci/packages.py
COPY packages /tmp/trainyard/packages
RUN names=$(python3 /tmp/trainyard/ci/packages.py closure env-servers) \
    && mkdir -p /tmp/staged \
    && for name in ${names}; do \
        cp -r "/tmp/trainyard/packages/${name}" /tmp/staged/; \
    done

# ---- the image ------------------------------------------------------------------------------
FROM ${BASE_IMAGE}
USER root
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
    && apt-get install -y --no-install-recommends default-jre-headless \
    && rm -rf /var/lib/apt/lists/*
COPY ci/models-requirements.txt /opt/trainyard/ci/models-requirements.txt
COPY ci/packages.py /opt/trainyard/ci/packages.py
COPY --from=sources /tmp/staged /opt/trainyard/packages
# --with-models and the [agents] extra: the eval-runner service runs a local model (SmolLM2 by
# default)
RUN --mount=type=secret,id=ca,required=false \
    if [ -f /run/secrets/ca ]; then export SSL_CERT_FILE=/run/secrets/ca; fi \
    && requirement=$(python3 /opt/trainyard/ci/packages.py requirement env-servers \
        --root /opt/trainyard/packages) \
    && bash /opt/trainyard/ci/install.sh --with-models "${requirement}"
USER ${TRAINYARD_UID}:${TRAINYARD_GID}
# ENV names the family; ENV_OPTIONS passes its options as JSON (e.g. {"max_jvms": 8}).
ENV ENV=babyai \
    ENV_OPTIONS="" \
    ENV_PORT=36001
EXPOSE 36001
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('ENV_PORT', '36001'), timeout=4)"]
CMD ["sh", "-c", "exec env-servers serve --host 0.0.0.0 --port \"$ENV_PORT\" --env \"$ENV\" --env-options \"$ENV_OPTIONS\""]
