# syntax=docker/dockerfile:1.7
# trainyard vla-finetune image: the base image plus the trainyard-vla-finetune package.
#
#   docker build -f docker/vla-finetune.Dockerfile --build-arg BASE_IMAGE=trainyard/base:latest \
#       -t trainyard/vla-finetune:latest .
ARG BASE_IMAGE=trainyard/base:latest
FROM ${BASE_IMAGE}
USER root
COPY packages/core /opt/trainyard/packages/core
COPY packages/vla-finetune /opt/trainyard/packages/vla-finetune
RUN --mount=type=secret,id=ca,required=false \
    if [ -f /run/secrets/ca ]; then export SSL_CERT_FILE=/run/secrets/ca; fi \
    && bash /opt/trainyard/ci/install.sh "/opt/trainyard/packages/vla-finetune"
USER ${TRAINYARD_UID}:${TRAINYARD_GID}
