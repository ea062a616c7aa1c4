# medbench on a CUDA GPU: `just docker-build` (or `docker build -t bench .`), then
# `docker run --gpus all bench` runs the default suite (see docs/container.md). The base is plain
# Debian: the CUDA user space (runtime libraries, cuDNN, NCCL, nvcc) comes from the package index as
# wheels, so every version of the stack is a pin in constraints.txt, and the image builds wherever the
# package index and a Debian mirror are reachable. The image's differences from constraints.txt are
# in docker/constraints-gpu.txt. Dependencies are installed before the code is copied, so a code
# change rebuilds only the last layers.
#
# BASE_IMAGE: a public image for machines that reach a registry; `just docker-build` passes the one
# docker/base.sh makes from a Debian mirror (for machines that reach none). Both are Debian bookworm.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ARG DEBIAN_FRONTEND=noninteractive

# Python 3.11 is bookworm's python3; the compilers and headers are for the kernels that are compiled
# when first used (DeepSpeed's ops, gptqmodel's, triton's) and for the source distributions below.
# Apt versions are not pinned: the release is fixed by the base, and its security updates should come in.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv python3-dev gcc g++ ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# A virtual environment (Debian's python3 is externally managed); PYTHON is what the justfile calls.
# CUDA_HOME is where the nvcc wheel lands (made below), for torch's extension builder and DeepSpeed.
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:/opt/cuda/bin:$PATH \
    CUDA_HOME=/opt/cuda \
    PYTHON=python3 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /opt/medbench

# The image's constraints: the shared file with docker/constraints-gpu.txt's overrides (torch).
COPY constraints.txt ./
COPY docker/constraints-gpu.txt docker/merge-constraints.sh ./docker/
RUN /usr/bin/python3 -m venv /opt/venv \
    && bash docker/merge-constraints.sh constraints.txt docker/constraints-gpu.txt > /opt/venv/constraints.txt

# Every step that downloads takes an optional CA bundle as the BuildKit secret `ca`, for networks that
# intercept TLS (`just docker-build` passes the host's bundle): it is mounted for that step only, so no
# layer holds it. Without the secret the file is absent and pip uses the image's own certificates.
RUN --mount=type=secret,id=ca,target=/run/secrets/ca.crt \
    if [ -s /run/secrets/ca.crt ]; then export PIP_CERT=/run/secrets/ca.crt; fi \
    && python3 -m pip install --no-cache-dir -c /opt/venv/constraints.txt pip setuptools

# torch's Linux wheel from the package index brings its CUDA runtime libraries (CUDA 13: cuda-toolkit's
# exact pins); the toolkit's nvcc and CCCL extras, at the same CUDA release, compile kernels at run
# time. The wheels put the toolkit under site-packages/nvidia/cu13 with lib/ where compilers look for
# lib64/ and only versioned libraries: /opt/cuda gives the usual layout.
RUN --mount=type=secret,id=ca,target=/run/secrets/ca.crt \
    if [ -s /run/secrets/ca.crt ]; then export PIP_CERT=/run/secrets/ca.crt; fi \
    && python3 -m pip install --no-cache-dir -c /opt/venv/constraints.txt torch "cuda-toolkit[nvcc,cccl]" \
    && ln -s "$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/nvidia/cu13" /opt/cuda \
    && ln -s lib /opt/cuda/lib64 \
    && ln -s libcudart.so.13 /opt/cuda/lib/libcudart.so \
    && nvcc --version | tail -n 2

# medbench's own dependencies, read from pyproject.toml alone (the code comes later).
COPY pyproject.toml ./
RUN --mount=type=secret,id=ca,target=/run/secrets/ca.crt \
    if [ -s /run/secrets/ca.crt ]; then export PIP_CERT=/run/secrets/ca.crt; fi \
    && python3 -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' \
        > /tmp/requirements.txt \
    && python3 -m pip install --no-cache-dir -c /opt/venv/constraints.txt -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# The GPU-only packages: quantized loading (bitsandbytes, compressed-tensors for AWQ, gptqmodel) and
# DeepSpeed, installed without prebuilt ops (DS_BUILD_OPS=0; they are JIT-compiled when first used),
# without build isolation so that its setup records this image's torch, and for CUDA (DS_ACCELERATOR:
# the build sees no GPU and would otherwise record the CPU accelerator).
RUN --mount=type=secret,id=ca,target=/run/secrets/ca.crt \
    if [ -s /run/secrets/ca.crt ]; then export PIP_CERT=/run/secrets/ca.crt; fi \
    && python3 -m pip install --no-cache-dir -c /opt/venv/constraints.txt bitsandbytes compressed-tensors gptqmodel \
    && DS_BUILD_OPS=0 DS_ACCELERATOR=cuda \
        python3 -m pip install --no-cache-dir --no-build-isolation -c /opt/venv/constraints.txt deepspeed

# flash-attn from upstream's prebuilt wheel for this torch/CUDA/Python/ABI, never a source build.
# FLASH_ATTN=auto installs it where upstream published that wheel and otherwise says so and goes on
# (attention then uses sdpa); yes makes a missing wheel fail the build; no skips it. Its log stays in
# the image: docker/gpu-check.py reports what the policy did, even when this step came from the cache.
ARG FLASH_ATTN=auto
COPY docker/flash-attn.sh ./docker/
RUN --mount=type=secret,id=ca,target=/run/secrets/ca.crt \
    if [ -s /run/secrets/ca.crt ]; then export PIP_CERT=/run/secrets/ca.crt; fi \
    && bash docker/flash-attn.sh /opt/venv/constraints.txt "$FLASH_ATTN" 2>&1 | tee /opt/venv/flash-attn.log

# A non-root user (uid 1000 unless MEDBENCH_UID says otherwise, e.g. your own `id -u`, so that it can
# write to a mounted results/).
ARG MEDBENCH_UID=1000
RUN useradd --create-home --uid "$MEDBENCH_UID" --shell /bin/bash medbench \
    && mkdir -p /cache/huggingface /cache/medbench /opt/medbench/results \
    && chown -R medbench:medbench /cache /opt/medbench

# Caches: the Hugging Face hub (HF_HOME) and the converted embedded model are volumes; JIT-compiled
# kernels (DeepSpeed's ops as torch extensions, gptqmodel's, triton's) go under /cache too.
# HF_HUB_OFFLINE is not set here: pass it with `docker run -e HF_HUB_OFFLINE=1`.
# Results go to /opt/medbench/results: mount it.
ENV HF_HOME=/cache/huggingface \
    MEDBENCH_CACHE=/cache/medbench \
    MEDBENCH_RESULTS=/opt/medbench/results \
    XDG_CACHE_HOME=/cache \
    TORCH_EXTENSIONS_DIR=/cache/torch_extensions \
    GPTQMODEL_TORCH_EXTENSIONS_DIR=/cache/gptqmodel/torch_extensions \
    TRITON_CACHE_DIR=/cache/triton
VOLUME ["/cache/huggingface", "/cache/medbench"]

# The code last: changing it reinstalls nothing.
COPY --chown=medbench:medbench . .
RUN python3 -m pip install --no-cache-dir --no-deps --no-build-isolation -c /opt/venv/constraints.txt -e .

# The commit the image was built from, for every run's record (the image has no .git).
ARG MEDBENCH_GIT_SHA=
ENV MEDBENCH_GIT_SHA=$MEDBENCH_GIT_SHA

USER $MEDBENCH_UID
ENTRYPOINT ["/opt/medbench/docker/entrypoint.sh"]
