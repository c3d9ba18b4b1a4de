# This repository's model image: its two model packages (wine-classifier, diabetes-regressor)
# and mlci, so that the pipeline's Train stage runs `mlci train` inside it, by digest, on a
# CPU or GPU agent. (A repository with one model package can use mlci's default Dockerfile,
# or the copy `mlci init` writes.)
#
# Build context: the repository root (the image stage uses [tool.mlci.image] context = "."),
# filtered by the root .dockerignore. The base is a CUDA *runtime* image; builds without a
# registry give another one as BASE_IMAGE (the tests use a local Debian image).
#
# Build arguments:
#   BASE_IMAGE           the base image (default: CUDA 12.6 runtime with cuDNN, Ubuntu 24.04)
#   MODEL_EXTRAS         extras of wine-classifier to install, e.g. "torch,plots" for the
#                        PyTorch model on a GPU agent (default "plots")
#   PIP_EXTRA_INDEX_URL  where pip also looks, e.g. https://download.pytorch.org/whl/cu126 for
#                        a CUDA build of torch matching the base image
#   VERSION, REVISION, CREATED, SOURCE   set by the image stage (OCI labels, package version)
ARG BASE_IMAGE=nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04

# ---- dependencies: a virtual environment with everything the three packages need ------
FROM ${BASE_IMAGE} AS deps

ARG DEBIAN_FRONTEND=noninteractive

# Use the base image's python3 if it can create a venv; otherwise install it. Its version is
# the distribution's: the base is a build argument (Ubuntu by default, Debian in the tests),
# so a pinned apt version would exist on one of them only.
# hadolint ignore=DL3008
RUN set -eux; \
    if ! python3 -m venv /opt/venv >/dev/null 2>&1; then \
        rm -rf /opt/venv; \
        apt-get update; \
        apt-get install -y --no-install-recommends python3 python3-venv; \
        rm -rf /var/lib/apt/lists/*; \
        python3 -m venv /opt/venv; \
    fi

# From the package metadata alone (empty modules stand in for the sources, and are removed
# again): this layer changes only when a dependency does. The packages' build backends (their
# [build-system] requires) come along, so that a code-only rebuild installs the sources
# without fetching them from the index again (pip's build isolation took ~11 s of a ~15 s
# rebuild). The test suites that numpy, scipy, pandas, scikit-learn, pyarrow and matplotlib
# ship inside their packages (about 120 MB; nothing imports them outside their own tests)
# are left out of the image.
COPY packages/mlci/pyproject.toml packages/mlci/README.md packages/mlci/hatch_build.py /src/mlci/
COPY packages/wine-classifier/pyproject.toml packages/wine-classifier/README.md /src/wine-classifier/
COPY packages/diabetes-regressor/pyproject.toml packages/diabetes-regressor/README.md /src/diabetes-regressor/
ARG MODEL_EXTRAS=plots
ARG PIP_EXTRA_INDEX_URL=
RUN set -eux; \
    mkdir -p /src/mlci/src/mlci /src/wine-classifier/src/wine_classifier \
        /src/diabetes-regressor/src/diabetes_regressor; \
    touch /src/mlci/src/mlci/__init__.py /src/wine-classifier/src/wine_classifier/__init__.py \
        /src/diabetes-regressor/src/diabetes_regressor/__init__.py; \
    model=/src/wine-classifier; \
    if [ -n "${MODEL_EXTRAS}" ]; then model="${model}[${MODEL_EXTRAS}]"; fi; \
    /opt/venv/bin/python -c 'import sys, tomllib; \
        requires = {r for path in sys.argv[1:] \
                    for r in tomllib.load(open(path, "rb"))["build-system"]["requires"]}; \
        print("\n".join(sorted(requires)))' \
        /src/mlci/pyproject.toml /src/wine-classifier/pyproject.toml \
        /src/diabetes-regressor/pyproject.toml > /src/build-requires.txt; \
    SETUPTOOLS_SCM_PRETEND_VERSION=0 PIP_EXTRA_INDEX_URL="${PIP_EXTRA_INDEX_URL}" \
        /opt/venv/bin/pip install --no-cache-dir -r /src/build-requires.txt \
            /src/mlci "${model}" /src/diabetes-regressor; \
    /opt/venv/bin/pip uninstall --yes mlci wine-classifier diabetes-regressor; \
    rm -rf /src; \
    site="$(/opt/venv/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')"; \
    for package in numpy scipy pandas sklearn pyarrow matplotlib; do \
        if [ -d "${site}/${package}" ]; then \
            find "${site}/${package}" -type d -name tests -prune -exec rm -rf {} +; \
        fi; \
    done

# ---- runtime: python3, the dependencies' layer, then the packages (a small layer) --------
FROM ${BASE_IMAGE}

ARG DEBIAN_FRONTEND=noninteractive

# python3 from the distribution, as in the deps stage (DL3008: see there).
# hadolint ignore=DL3008
RUN set -eux; \
    if ! command -v python3 >/dev/null 2>&1; then \
        apt-get update; \
        apt-get install -y --no-install-recommends python3; \
        rm -rf /var/lib/apt/lists/*; \
    fi; \
    groupadd --system --gid 10001 app; \
    useradd --system --uid 10001 --gid app --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin app

COPY --from=deps /opt/venv /opt/venv

# The sources: a code-only change rebuilds from here on. The build context has no .git, so
# the version comes in as a build argument (declared here: a new version must not invalidate
# the layers above). No build isolation: the build backends are in the venv already.
COPY packages/mlci/pyproject.toml packages/mlci/README.md packages/mlci/hatch_build.py /src/mlci/
COPY packages/mlci/src/ /src/mlci/src/
COPY packages/wine-classifier/pyproject.toml packages/wine-classifier/README.md /src/wine-classifier/
COPY packages/wine-classifier/src/ /src/wine-classifier/src/
COPY packages/diabetes-regressor/pyproject.toml packages/diabetes-regressor/README.md /src/diabetes-regressor/
COPY packages/diabetes-regressor/src/ /src/diabetes-regressor/src/
ARG VERSION=0.0.0
RUN SETUPTOOLS_SCM_PRETEND_VERSION="${VERSION}" \
        /opt/venv/bin/pip install --no-cache-dir --no-deps --no-build-isolation \
            /src/mlci /src/wine-classifier /src/diabetes-regressor \
    && rm -rf /src

ENV PATH="/opt/venv/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MLFLOW_DISABLE_TELEMETRY=true

ARG REVISION=unknown
ARG CREATED=unknown
ARG SOURCE=unknown

LABEL org.opencontainers.image.title="mlci-models" \
      org.opencontainers.image.description="The wine classifier and the diabetes regressor, with mlci to train them" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="${SOURCE}"

USER 10001:10001
WORKDIR /tmp

ENTRYPOINT ["mlci"]
CMD ["--help"]
