# syntax=docker/dockerfile:1.7
# trainyard carla-env image: the base image plus the trainyard-carla-env package.
#
#   docker build -f docker/carla-env.Dockerfile --build-arg BASE_IMAGE=trainyard/base:latest \
#       -t trainyard/carla-env:latest .
ARG BASE_IMAGE=trainyard/base:latest
FROM ${BASE_IMAGE}
USER root
COPY packages/core /opt/trainyard/packages/core
COPY packages/carla-env /opt/trainyard/packages/carla-env
RUN --mount=type=secret,id=ca,required=false \
    if [ -f /run/secrets/ca ]; then export SSL_CERT_FILE=/run/secrets/ca; fi \
    && bash /opt/trainyard/ci/install.sh "/opt/trainyard/packages/carla-env[carla]"
USER ${TRAINYARD_UID}:${TRAINYARD_GID}
