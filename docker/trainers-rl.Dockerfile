# syntax=docker/dockerfile:1.7
# trainyard trainers-rl image: the base image plus the trainyard-trainers-rl package with what
# its compose services run: the main job's ONNX export ([export]), the CARLA job's client
# ([carla]) and W&B for --use-wandb ([wandb]). `nox -s images` starts each service's command.
#
#   docker build -f docker/trainers-rl.Dockerfile --build-arg BASE_IMAGE=trainyard/base:latest \
#       -t trainyard/trainers-rl:latest .
ARG BASE_IMAGE=trainyard/base:latest
FROM ${BASE_IMAGE}
USER root
COPY packages/core /opt/trainyard/packages/core
COPY packages/carla-env /opt/trainyard/packages/carla-env
COPY packages/driving-vla /opt/trainyard/packages/driving-vla
COPY packages/trainers-rl /opt/trainyard/packages/trainers-rl
RUN --mount=type=secret,id=ca,required=false \
    if [ -f /run/secrets/ca ]; then export SSL_CERT_FILE=/run/secrets/ca; fi \
    && bash /opt/trainyard/ci/install.sh "/opt/trainyard/packages/trainers-rl[export,carla,wandb]"
USER ${TRAINYARD_UID}:${TRAINYARD_GID}
