# medbench on a CUDA GPU: `docker build -t bench .`, then `docker run --gpus all bench` runs the default
# suite (see README, "Container"). Every version comes from constraints.txt; the image's differences
# from it are in docker/constraints-gpu.txt. Dependencies are installed before the code is copied, so
# a code change rebuilds only the last layers.
#
# devel, not runtime: DeepSpeed's ops and gptqmodel's kernels are JIT-compiled at run time with this
# image's nvcc, whose CUDA 12.8 matches the torch build from PyTorch's cu128 index below.
FROM nvidia/cuda:12.8.1-devel-ubuntu24.04

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ARG DEBIAN_FRONTEND=noninteractive

# Python 3.12 is Ubuntu 24.04's python3. Apt versions are not pinned: the base image's exact tag fixes
# the release, and its security updates should come in.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv python3-dev g++ ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# A virtual environment (Ubuntu's python3 is externally managed); PYTHON is what the justfile calls.
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHON=python3 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /opt/medbench

# The image's constraints: the shared file with docker/constraints-gpu.txt's overrides (torch).
COPY constraints.txt ./
COPY docker/constraints-gpu.txt docker/merge-constraints.sh ./docker/
RUN /usr/bin/python3 -m venv /opt/venv \
    && bash docker/merge-constraints.sh constraints.txt docker/constraints-gpu.txt > /opt/venv/constraints.txt \
    && python3 -m pip install --no-cache-dir -c /opt/venv/constraints.txt pip setuptools

# torch: the CUDA 12.8 build from PyTorch's index (PyPI's Linux wheel of this torch targets CUDA 13).
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu128
RUN python3 -m pip install --no-cache-dir -c /opt/venv/constraints.txt --index-url "$TORCH_INDEX" torch

# medbench's own dependencies, read from pyproject.toml alone (the code comes later).
COPY pyproject.toml ./
RUN python3 -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' \
        > /tmp/requirements.txt \
    && python3 -m pip install --no-cache-dir -c /opt/venv/constraints.txt -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# The GPU-only packages: quantized loading (bitsandbytes, compressed-tensors for AWQ, gptqmodel) and
# DeepSpeed, installed without prebuilt ops (DS_BUILD_OPS=0; they are JIT-compiled when first used),
# without build isolation so that its setup records this image's torch, and for CUDA (DS_ACCELERATOR:
# the build sees no GPU and would otherwise record the CPU accelerator).
RUN python3 -m pip install --no-cache-dir -c /opt/venv/constraints.txt bitsandbytes compressed-tensors gptqmodel \
    && DS_BUILD_OPS=0 DS_ACCELERATOR=cuda \
        python3 -m pip install --no-cache-dir --no-build-isolation -c /opt/venv/constraints.txt deepspeed

# flash-attn from upstream's prebuilt wheel for this torch/CUDA/Python/ABI, never a source build.
# FLASH_ATTN=auto installs it where upstream published that wheel and otherwise says so and goes on
# (attention then uses sdpa); yes makes a missing wheel fail the build; no skips it.
ARG FLASH_ATTN=auto
COPY docker/flash-attn.sh ./docker/
RUN bash docker/flash-attn.sh /opt/venv/constraints.txt "$FLASH_ATTN"

# A non-root user (uid 1000 unless MEDBENCH_UID says otherwise, e.g. your own `id -u`, so that it can
# write to a mounted results/). Ubuntu 24.04 images ship a user `ubuntu` with uid 1000: it goes.
ARG MEDBENCH_UID=1000
RUN if id -u ubuntu > /dev/null 2>&1; then userdel ubuntu && rm -rf /home/ubuntu; fi \
    && useradd --create-home --uid "$MEDBENCH_UID" --shell /bin/bash medbench \
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
