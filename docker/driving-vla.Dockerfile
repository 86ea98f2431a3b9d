# syntax=docker/dockerfile:1.7
# trainyard driving-vla image: the base image plus the trainyard-driving-vla package.
#
#   docker build -f docker/driving-vla.Dockerfile --build-arg BASE_IMAGE=trainyard/base:latest \
#       -t trainyard/driving-vla:latest .
ARG BASE_IMAGE=trainyard/base:latest
FROM ${BASE_IMAGE}
USER root
COPY packages/core /opt/trainyard/packages/core
COPY packages/carla-env /opt/trainyard/packages/carla-env
COPY packages/driving-vla /opt/trainyard/packages/driving-vla
RUN --mount=type=secret,id=ca,required=false \
    if [ -f /run/secrets/ca ]; then export SSL_CERT_FILE=/run/secrets/ca; fi \
    && bash /opt/trainyard/ci/install.sh "/opt/trainyard/packages/driving-vla"
USER ${TRAINYARD_UID}:${TRAINYARD_GID}
