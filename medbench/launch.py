"""Starting one process per GPU: the `accelerate launch` command for evaluation, and the environment
every process that medbench starts gets (evaluation and training alike).

NVLink multicast (NCCL's NVLS, PyTorch's symmetric-memory multicast, NVSHMEM's NVLS) is off in every
process started here unless the caller's environment sets the variable itself: on shared hosts a
program that uses it can take the host's GPUs out of service, and nothing here gains from it.
"""

from __future__ import annotations

import sys

from medbench.machines import Machines

MULTICAST_OFF = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}
# Set by a launcher in each process it starts; a launcher started from such a process must not inherit them.
DISTRIBUTED_ENV = (
    "RANK",
    "LOCAL_RANK",
    "WORLD_SIZE",
    "LOCAL_WORLD_SIZE",
    "GROUP_RANK",
    "ROLE_RANK",
    "MASTER_ADDR",
    "MASTER_PORT",
    "TORCHELASTIC_RUN_ID",
)


def process_environment(env: dict[str, str]) -> dict[str, str]:
    """`env` with NVLink multicast off (a value the caller set is kept)."""
    out = dict(env)
    for key, value in MULTICAST_OFF.items():
        out.setdefault(key, value)
    return out


def accelerate_command(num_processes: int, module: str, argv: list[str], machines: Machines | None = None) -> list[str]:
    """`accelerate launch` of `python -m module argv` in `num_processes` processes (over every machine of
    `machines`, default this one alone).

    `--multi_gpu` is explicit so that the same command starts N processes where no GPU is visible
    (torch.distributed with gloo on CPU, with `child_environment(cpu=True)`: how the tests run it); on
    CUDA accelerate would infer it.
    """
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        str(num_processes),
        *(machines or Machines()).accelerate_arguments(),
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "-m",
        module,
        *argv,
    ]


def child_environment(env: dict[str, str], cpu: bool = False) -> dict[str, str]:
    """The environment for a new launcher: multicast off, no distributed variables of a launcher above.

    `cpu`: no GPU is visible; accelerate then forms the process group on CPU (gloo) only when told so.
    """
    out = process_environment(env)
    for key in DISTRIBUTED_ENV:
        out.pop(key, None)
    if cpu:
        out["ACCELERATE_USE_CPU"] = "true"
    return out
