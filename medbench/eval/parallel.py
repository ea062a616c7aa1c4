"""Data-parallel evaluation: one process per GPU, each scoring its share through lm-eval's own path.

`just eval MODEL ... --gpus N` starts N processes with `accelerate launch` (medbench/launch.py); each
runs the same `medbench eval` without `--gpus`. lm-eval's HFLM sets up data parallelism itself only
when it loads the model from a name (`pretrained` a string); handed a loaded model, it runs as one
process (rank 0 of 1) and says so. medbench loads its own models (embedded GGUF, AWQ conversion,
adapters, the sanity check), so each process loads its copy on its own GPU (`cuda:LOCAL_RANK`) and
`attach` then gives the model what HFLM would have set for a model it loaded under `accelerate
launch`: rank, world size, device and the Accelerator. From there everything is lm-eval's: each rank
builds the requests of every world_size-th document, ranks with fewer requests are padded, results
and logged samples are gathered to rank 0, which alone gets the results back and writes the record.

Rank 0 alone checks the request, locks and claims the run folder and converts what is converted once;
it then hands the checked request to the other ranks (`share`), or its refusal, which they raise too.

Resume: each rank answers into its own JSON response cache (medbench/eval/response_cache.py; rank 0
the run's own responses.sqlite). Which documents a rank scores depends on the number of processes, so
before a run the main process merges every rank file left in the folder into responses.sqlite and
copies that into each other rank's file (`spread_caches`), and after the run it merges them back
(`gather_caches`): at rest the folder holds one file, and a run resumed on any number of GPUs, or on
one, answers from the cache whatever was answered before.

The canary (medbench/eval/lm.py) runs in every rank, on the questions that rank scores: a batched
kernel that computes wrong numbers on one GPU, or at one padded width, shows only there. Rank 0
records the canary over all ranks.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from medbench.errors import MedbenchError
from medbench.eval import response_cache
from medbench.machines import PEER_TIMEOUT_ENV


class ParallelError(MedbenchError):
    pass


@dataclass
class _Refusal:
    message: str


@dataclass
class Processes:
    """This process's place among the evaluation processes (one process: rank 0 of 1, no Accelerator)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    accelerator: object | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def device(self) -> str | None:
        """The device this process loads its copy on; None: the settings decide (one process)."""
        return str(self.accelerator.device) if self.accelerator is not None else None

    def gather(self, obj) -> list:
        """Every process's `obj`, in rank order, on every process."""
        if self.accelerator is None:
            return [obj]
        import torch.distributed as dist

        out = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def share(self, obj=None):
        """Rank 0's `obj` on every process; a refusal of rank 0's (`refuse`) is raised on the others."""
        obj = self._broadcast(obj)
        if isinstance(obj, _Refusal):
            raise ParallelError(f"rank 0 stopped the run before it began: {obj.message}")
        return obj

    def refuse(self, error: BaseException) -> None:
        """Rank 0, before `share`: the other processes, waiting in `share`, stop with `error`'s message."""
        if self.is_main:
            self._broadcast(_Refusal(f"{type(error).__name__}: {error}"))

    def _broadcast(self, obj):
        if self.accelerator is None:
            return obj
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def close(self) -> None:
        """Leaves the process group (no barrier: a rank that is done need not wait for rank 0's record)."""
        if self.accelerator is not None:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


@contextlib.contextmanager
def processes():
    """This process's place among the evaluation processes, the process group left on the way out."""
    procs = setup()
    try:
        yield procs
    finally:
        procs.close()


@contextlib.contextmanager
def refusal_shared(procs: Processes):
    """Rank 0, before it shares the checked request: an error here reaches the other ranks (waiting in `share`)."""
    try:
        yield
    except BaseException as e:
        procs.refuse(e)
        raise


def setup() -> Processes:
    """Joins the process group when started by a launcher (WORLD_SIZE > 1); else one process."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Processes()
    from accelerate import Accelerator
    from accelerate.utils import InitProcessGroupKwargs

    accelerator = Accelerator(kwargs_handlers=[InitProcessGroupKwargs(timeout=peer_timeout())])
    return Processes(
        rank=accelerator.process_index,
        world_size=accelerator.num_processes,
        local_rank=accelerator.local_process_index,
        accelerator=accelerator,
    )


def peer_timeout() -> timedelta:
    """How long a process waits for the others at an exchange: the launcher's --peer-timeout over several
    machines (medbench/machines.py), where nothing else notices a machine that stopped. On one machine,
    as HFLM does, a year: ranks wait for each other at the end of every request type, and the launcher
    stops them all when one fails."""
    seconds = os.environ.get(PEER_TIMEOUT_ENV)
    return timedelta(seconds=float(seconds)) if seconds else timedelta(weeks=52)


def attach(lm, processes: Processes) -> None:
    """What HFLM sets for a model it loads under `accelerate launch` (lm_eval/models/huggingface.py)."""
    if processes.accelerator is None:
        return
    import torch

    lm.accelerator = processes.accelerator
    lm._device = torch.device(str(processes.accelerator.device))
    # The global rank (HFLM takes the local one, the same on one machine): documents split over all processes.
    lm._rank = processes.rank
    lm._world_size = processes.world_size


def _remove(path: Path) -> None:
    for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        p.unlink(missing_ok=True)


def gather_caches(store: response_cache.ResponseStore) -> int:
    """Every other rank's file in the run's cache folder merged into rank 0's `store`, then removed."""
    added = 0
    for path in response_cache.rank_files(store.path.parent):
        added += store.copy_from(path)
        _remove(path)
    return added


def spread_caches(store: response_cache.ResponseStore, world_size: int) -> None:
    """Rank 0's answers (after gather_caches: every answer there is) copied into ranks 1..world_size-1's files."""
    for rank in range(1, world_size):
        target = response_cache.ResponseStore(response_cache.rank_file(store.path.parent, rank))
        try:
            target.copy_from(store.path)
        finally:
            target.close()


def tidy_samples(samples: list[dict], repeats: int = 1) -> list[dict]:
    """Samples gathered from N ranks as one process logs them: in document order (they come rank by rank:
    0, N, 2N, …, then 1, …; each filter's samples together, filters in their order), and without the answers
    lm-eval appends to a rank's last request when it pads that rank to the others' length."""
    filters: dict[str, int] = {}
    for s in samples:
        filters.setdefault(s.get("filter"), len(filters))
    out = sorted(samples, key=lambda s: (filters[s.get("filter")], s["doc_id"]))
    for s in out:
        s["resps"] = [r[:repeats] if isinstance(r, list) else r for r in s.get("resps", [])]
    return out


def process_facts(lm, peak: dict) -> dict:
    """What rank 0 records of each process."""
    return {
        "device": str(lm.device),
        "peak_gpu_gib": peak["peak_gpu_gib"],
        "generated_tokens": lm.generated_tokens,
        "generate_seconds": lm.generate_seconds,
        "gen_engine": dict(lm.gen_engine_used),
        "canary": list(lm.canary_report),
    }


def canary_summary(reports: list[dict]) -> dict | None:
    """The canary over every scoring call of every process: questions re-scored alone, worst difference."""
    if not reports:
        return None
    return {
        "checked": sum(r["checked"] for r in reports),
        "max_abs_diff": max(r["max_abs_diff"] for r in reports),
        "tolerance": reports[0]["tolerance"],
        "passed": all(r["passed"] for r in reports),
    }


def parallel_record(processes: Processes, placement: dict | None, per_process: list[dict]) -> dict:
    """How the run used the machine: processes (data parallel), placement (sharded or not), memory per GPU."""
    import torch

    sharded = (placement or {}).get("mode") == "sharded"
    out = {
        "processes": processes.world_size,
        "mode": "data_parallel" if processes.world_size > 1 else "sharded" if sharded else "single",
        "devices": [p["device"] for p in per_process],
        "placement": placement,
        "peak_gpu_gib_per_process": [p["peak_gpu_gib"] for p in per_process],
        "canary_checked_per_process": [sum(r["checked"] for r in p["canary"]) for p in per_process],
    }
    if sharded:
        out["peak_gpu_gib_per_gpu"] = [
            round(torch.cuda.max_memory_allocated(i) / 2**30, 3) for i in range(torch.cuda.device_count())
        ]
    return out
