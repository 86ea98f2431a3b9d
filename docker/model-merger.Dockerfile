# syntax=docker/dockerfile:1.7
# trainyard model-merger image: the base image plus the trainyard-model-merger package.
#
#   docker build -f docker/model-merger.Dockerfile --build-arg BASE_IMAGE=trainyard/base:latest \
#       -t trainyard/model-merger:latest .
ARG BASE_IMAGE=trainyard/base:latest
FROM ${BASE_IMAGE}
USER root
COPY packages/core /opt/trainyard/packages/core
COPY packages/model-merger /opt/trainyard/packages/model-merger
RUN --mount=type=secret,id=ca,required=false \
    if [ -f /run/secrets/ca ]; then export SSL_CERT_FILE=/run/secrets/ca; fi \
    && bash /opt/trainyard/ci/install.sh "/opt/trainyard/packages/model-merger"
USER ${TRAINYARD_UID}:${TRAINYARD_GID}
