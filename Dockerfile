# tfseg image: `docker run --gpus all -v DATA:/data -v RUNS:/runs IMAGE train ...`
#
# BASE_IMAGE defaults to the official TensorFlow GPU image of the pinned version; any base
# with Python 3.10+ works (for a CPU image, one with python3 and python3-venv): the
# pinned tensorflow-cpu is then installed from requirements.txt. For air-gapped builds,
# point pip at a wheelhouse: --build-arg PIP_FIND_LINKS=URL_OR_DIR --build-arg PIP_NO_INDEX=1
ARG BASE_IMAGE=tensorflow/tensorflow:2.21.0-gpu
FROM ${BASE_IMAGE}

# Every ARG in scope is part of the build cache key of the RUN steps after it: only the
# wheelhouse settings come before the dependency layer, the per-commit labels come last.
ARG PIP_FIND_LINKS=
ARG PIP_NO_INDEX=false

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    PATH=/opt/venv/bin:${PATH} \
    KERAS_HOME=/cache/keras \
    TFDS_DATA_DIR=/data/tensorflow_datasets \
    MPLCONFIGDIR=/tmp/matplotlib

# Dependencies first: this layer is rebuilt only when requirements.txt changes.
COPY requirements.txt docker/install-requirements.sh /tmp/build/
RUN sh /tmp/build/install-requirements.sh /tmp/build/requirements.txt && rm -rf /tmp/build

# Then the package itself.
COPY pyproject.toml README.md /src/
COPY tfseg /src/tfseg
RUN python3 -m pip install --no-deps --no-build-isolation /src \
    && rm -rf /src \
    && tfseg --version

# A non-root user; /data (datasets, read-only is fine), /runs (outputs) and /cache are
# the mount points. Run with --user "$(id -u):$(id -g)" to own outputs on the host.
RUN (useradd --uid 1000 --create-home --shell /usr/sbin/nologin tfseg 2>/dev/null \
     || adduser --uid 1000 --disabled-password --gecos "" tfseg) \
    && mkdir -p /data /runs /cache/keras \
    && chown tfseg /data /runs \
    && chmod 1777 /runs /cache /cache/keras
USER 1000
WORKDIR /runs
VOLUME ["/data", "/runs"]
# tfseg serve --host 0.0.0.0 (TF Serving's REST port)
EXPOSE 8501

ENTRYPOINT ["tfseg"]
CMD ["--help"]

ARG VERSION=0.1.0
ARG REVISION=unknown
ARG SOURCE=https://github.com/tfseg/tfseg
LABEL org.opencontainers.image.title="tfseg" \
      org.opencontainers.image.description="Semantic segmentation with TensorFlow and Keras 3: train, export, predict" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0"
# Recorded in exported models' metadata (tfseg.serving.export.source_commit).
ENV TFSEG_GIT_COMMIT=${REVISION}
