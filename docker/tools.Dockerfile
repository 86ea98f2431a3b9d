# syntax=docker/dockerfile:1.7
# trainyard tools image: a package image plus JupyterLab and the formatters, for the
# notebook and formatter compose services.
#
#   docker build -f docker/tools.Dockerfile --build-arg BASE_IMAGE=trainyard/trainers-rl:latest \
#       -t trainyard/tools:latest .
ARG BASE_IMAGE=trainyard/trainers-rl:latest
FROM ${BASE_IMAGE}
USER root
COPY ci/tools-requirements.txt /opt/trainyard/ci/tools-requirements.txt
RUN --mount=type=secret,id=ca,required=false \
    if [ -f /run/secrets/ca ]; then export SSL_CERT_FILE=/run/secrets/ca; fi \
    && bash /opt/trainyard/ci/install.sh -r /opt/trainyard/ci/tools-requirements.txt
EXPOSE 8888
USER ${TRAINYARD_UID}:${TRAINYARD_GID}
