# The single-stage equivalent of the root Dockerfile, for benchmarks/image_size.py only (no
# pipeline builds it). The same base image, the same three packages with the same extras in
# a virtual environment, the same user, environment and entry point, built the conventional
# one-stage way: copy the sources, `pip install` them with their dependencies in one step.
# It keeps what such a build keeps: pip's cache under /root/.cache/pip, the sources in /src,
# the dependencies' test suites. The deps stage of the root Dockerfile needs no build tools
# (every dependency comes as a wheel), so there are none to keep here either.
#
# Build context: the repository root, with the root .dockerignore (as the root Dockerfile).
ARG BASE_IMAGE=nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04

FROM ${BASE_IMAGE}

ARG DEBIAN_FRONTEND=noninteractive

# The same apt step as the root Dockerfile's (see its note on DL3008).
# hadolint ignore=DL3008
RUN set -eux; \
    if ! python3 -m venv /opt/venv >/dev/null 2>&1; then \
        rm -rf /opt/venv; \
        apt-get update; \
        apt-get install -y --no-install-recommends python3 python3-venv; \
        rm -rf /var/lib/apt/lists/*; \
        python3 -m venv /opt/venv; \
    fi; \
    groupadd --system --gid 10001 app; \
    useradd --system --uid 10001 --gid app --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin app

COPY packages/mlci/pyproject.toml packages/mlci/README.md packages/mlci/hatch_build.py /src/mlci/
COPY packages/mlci/src/ /src/mlci/src/
COPY packages/wine-classifier/pyproject.toml packages/wine-classifier/README.md /src/wine-classifier/
COPY packages/wine-classifier/src/ /src/wine-classifier/src/
COPY packages/diabetes-regressor/pyproject.toml packages/diabetes-regressor/README.md /src/diabetes-regressor/
COPY packages/diabetes-regressor/src/ /src/diabetes-regressor/src/

ARG MODEL_EXTRAS=plots
ARG VERSION=0.0.0
# pip's cache stays in the image: that is what a one-stage build without the flag keeps.
# hadolint ignore=DL3042
RUN SETUPTOOLS_SCM_PRETEND_VERSION="${VERSION}" \
        /opt/venv/bin/pip install /src/mlci "/src/wine-classifier[${MODEL_EXTRAS}]" \
            /src/diabetes-regressor

ENV PATH="/opt/venv/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MLFLOW_DISABLE_TELEMETRY=true

USER 10001:10001
WORKDIR /tmp

ENTRYPOINT ["mlci"]
CMD ["--help"]
