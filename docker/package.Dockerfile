# syntax=docker/dockerfile:1.7
# trainyard package image: the base image plus one package (PACKAGE) and the trainyard packages
# it depends on, installed from their paths with the extras its pyproject's [tool.trainyard]
# table names for the image (ci/packages.py reads it; EXTRAS, when given, replaces them).
#
#   docker build -f docker/package.Dockerfile --build-arg BASE_IMAGE=trainyard/base:latest \
#       --build-arg PACKAGE=trainers-rl -t trainyard/trainers-rl:latest .
#
# `make docker-build-<package>` and `nox -s images` pass these; compose passes PACKAGE.
ARG BASE_IMAGE=trainyard/base:latest

# ---- sources (as the base's non-root user): only PACKAGE and the packages it needs, so a
# change to another package keeps this image's install layer cached
FROM ${BASE_IMAGE} AS sources
ARG PACKAGE
COPY ci/packages.py /tmp/trainyard/ci/packages.py
COPY packages /tmp/trainyard/packages
RUN test -n "${PACKAGE}" || { echo "PACKAGE is required: --build-arg PACKAGE=<package>" >&2; exit 2; } \
    && names=$(python3 /tmp/trainyard/ci/packages.py closure "${PACKAGE}") \
    && mkdir -p /tmp/staged \
    && for name in ${names}; do \
        cp -r "/tmp/trainyard/packages/${name}" /tmp/staged/; \
    done

# ---- the image ------------------------------------------------------------------------------
FROM ${BASE_IMAGE}
ARG PACKAGE
ARG EXTRAS=""
USER root
COPY ci/packages.py /opt/trainyard/ci/packages.py
COPY --from=sources /tmp/staged /opt/trainyard/packages
RUN --mount=type=secret,id=ca,required=false \
    if [ -f /run/secrets/ca ]; then export SSL_CERT_FILE=/run/secrets/ca; fi \
    && if [ -n "${EXTRAS}" ]; then requirement="/opt/trainyard/packages/${PACKAGE}[${EXTRAS}]"; \
       else requirement=$(python3 /opt/trainyard/ci/packages.py requirement "${PACKAGE}" \
           --root /opt/trainyard/packages); fi \
    && echo "installing ${requirement}" \
    && bash /opt/trainyard/ci/install.sh "${requirement}"
USER ${TRAINYARD_UID}:${TRAINYARD_GID}
