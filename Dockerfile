# Minimal GPU image; the container issue pins it fully (lock file, flash-attn wheel, non-root user).
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PIP_BREAK_SYSTEM_PACKAGES=1 PYTHON=python3
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-pip git \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/medbench
COPY pyproject.toml README.md ./
COPY harness ./harness
COPY trainers ./trainers
RUN python3 -m pip install torch==2.11.0 && python3 -m pip install -e .
COPY . .
CMD ["just", "demo"]
