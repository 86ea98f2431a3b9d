# syntax=docker/dockerfile:1.7
# trainyard env-servers image: the base image plus the trainyard-env-servers package.
#
#   docker build -f docker/env-servers.Dockerfile --build-arg BASE_IMAGE=trainyard/base:latest \
#       -t trainyard/env-servers:latest .
ARG BASE_IMAGE=trainyard/base:latest
FROM ${BASE_IMAGE}
USER root
COPY packages/core /opt/trainyard/packages/core
COPY packages/env-servers /opt/trainyard/packages/env-servers
RUN --mount=type=secret,id=ca,required=false \
    if [ -f /run/secrets/ca ]; then export SSL_CERT_FILE=/run/secrets/ca; fi \
    && bash /opt/trainyard/ci/install.sh "/opt/trainyard/packages/env-servers"
USER ${TRAINYARD_UID}:${TRAINYARD_GID}
ENV ENV_PORT=36001
EXPOSE 36001
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('ENV_PORT', '36001'), timeout=4)"]
CMD ["sh", "-c", "exec env-servers serve --host 0.0.0.0 --port \"$ENV_PORT\""]
