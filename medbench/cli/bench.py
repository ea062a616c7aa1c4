"""`medbench bench quant|train|eval`: benchmarks that print ratios measured side by side in one run.

`quant` (medbench/bench/quant.py): one forward pass of a random-init model at a registry
shape in bf16 and in the `bnb` variant's NF4. `train` (medbench/bench/train.py): `just train` per method,
and with one setting changed at a time, beside a plain PyTorch training step. `eval`
(medbench/bench/eval.py): our `mc` and `gen`/`cot` paths beside stock lm-eval and the simplest
loops on the same model and questions, with answer agreement (runs on CPU too, with --limit).
Records go to results/bench/ with the GPU (or CPU) named.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from medbench.errors import MedbenchError
from medbench.options import add_arguments, arg, from_args, non_negative_int, positive_int, positive_int_or_auto
from medbench.paths import results_dir

HELP = (
    "benchmarks printing side-by-side ratios: quant (bf16 vs NF4), train (speed per method), eval (our scoring "
    "and generation vs stock lm-eval)"
)


@dataclass
class QuantBenchArguments:
    shape: str = arg("gemma3-1b", help="random-init model at this registry alias's shape")
    batch: int = arg(64, type=positive_int, help="sequences per forward pass")
    seq: int = arg(320, type=positive_int, help="tokens per sequence")
    repeats: int = arg(10, type=positive_int, help="timed forward passes per precision")


@dataclass
class TrainBenchArguments:
    shape: str = arg("gemma3-1b", help="random-init model at this registry alias's shape")
    model: str | None = arg(None, help="a local model directory instead of --shape (e.g. from medbench.models.shapes)")
    configs: str | None = arg(
        None, help="comma separated; NAME@G runs NAME on G GPUs (default: medbench/bench/train.py's DEFAULT_CONFIGS)"
    )
    steps: int = arg(30, type=positive_int, help="optimizer steps per configuration")
    fresh: bool = arg(
        False,
        help="measure every configuration again (default: continue a record cut short on the same machine and code)",
    )


@dataclass
class EvalBenchArguments:
    model: str = arg("gemma3-270m", help="registry alias, local model directory or hub id")
    variant: str = arg("base", help="a variant in medbench/models/variants.yaml")
    modes: str = arg(
        "mc,gen,cot",
        help="comma separated: mc (zero-shot letters), gen (zero-shot generation), cot (5-shot chain of thought)",
    )
    limit: int | None = arg(None, type=positive_int, help="questions per task, every method (default: all)")
    baseline_limit: int | None = arg(
        None,
        type=non_negative_int,
        help="questions per task for stock lm-eval's generate_until (default: --limit; 0 skips it)",
    )
    study_limit: int = arg(
        20, type=non_negative_int, help="questions per task for the study's batch-1 loop (0 skips it)"
    )
    flip_sample: int = arg(
        50,
        type=non_negative_int,
        help="mc: a seeded sample of questions per task also scored at batch size 1, to "
        "count the answers batching flips (0 skips it)",
    )
    batch_size: int = arg(64, type=positive_int, help="questions per batch for mc and stock lm-eval's generation")
    slots: str = arg(
        "auto",
        type=positive_int_or_auto,
        help="gen/cot: the engine's slots, a number or auto (the batch_size setting of a run)",
    )
    device: str = arg("auto", help="cuda where visible, else cpu")
    attn_implementation: str = arg(
        "auto",
        help="as the attn_implementation setting: flash_attention_2 where installed on a GPU, else sdpa; or name one",
    )
    dtype: str = arg(
        "auto",
        help="as the dtype setting: bf16 on GPU, fp32 on CPU; float32 on a GPU shows which differences are bf16's",
    )
    ablations: bool = arg(
        False, help="gen/cot: also the engine without CUDA graphs and without prefix sharing, on the same questions"
    )
    end_to_end: bool = arg(
        False,
        help="also time `medbench eval` itself per mode, as a user types it (load and graph capture included), and "
        "lm-eval's own CLI with its hf model beside it",
    )
    end_to_end_limit: int | None = arg(
        None, type=positive_int, help="--end-to-end: questions per task for medbench (default: all)"
    )
    stock_limit: int | None = arg(
        None,
        type=non_negative_int,
        help="--end-to-end: questions per task for lm-eval's CLI (default: --end-to-end-limit; 0 skips it)",
    )
    decode_shape: str | None = arg(
        None, help="instead: fixed-length decode throughput at this registry shape, random weights (e.g. qwen3-8b)"
    )
    decode_batches: str = arg("64,128,256", help="--decode-shape: comma-separated batch sizes")
    decode_prompt: int = arg(256, type=positive_int, help="--decode-shape: prompt tokens per sequence")
    decode_new: int = arg(256, type=positive_int, help="--decode-shape: new tokens per sequence (EOS ignored)")


def make_parser(sub) -> None:
    p = sub.add_parser("bench", help=HELP, description=__doc__)
    kinds = p.add_subparsers(dest="bench", required=True, metavar="BENCH")
    add_arguments(
        kinds.add_parser("quant", help="bf16 vs bitsandbytes NF4 forward time and memory"), QuantBenchArguments
    )
    add_arguments(
        kinds.add_parser("train", help="training tokens/s, MFU and memory per method, beside a plain PyTorch step"),
        TrainBenchArguments,
    )
    add_arguments(
        kinds.add_parser(
            "eval",
            help="our mc and gen/cot paths vs stock lm-eval and the simplest loops: questions/s, tokens/s, memory, "
            "identical answers",
        ),
        EvalBenchArguments,
    )


def run(args) -> int:
    out_dir = results_dir() / "bench"
    if args.bench == "train":
        return bench_train(from_args(TrainBenchArguments, args), out_dir)
    if args.bench == "eval":
        return bench_eval(from_args(EvalBenchArguments, args), out_dir)
    from medbench.bench.quant import bench_quant
    from medbench.records.io import write_json

    opts = from_args(QuantBenchArguments, args)
    result = bench_quant(opts.shape, opts.batch, opts.seq, opts.repeats)
    out_dir.mkdir(parents=True, exist_ok=True)
    gpu = result["gpu"].replace(" ", "-")
    write_json(out_dir / f"quant-{opts.shape}-b{opts.batch}x{opts.seq}-{gpu}.json", result)
    print(json.dumps({k: v for k, v in result.items() if k != "versions"}, indent=2))
    return 0


def bench_train(opts: TrainBenchArguments, out_dir: Path) -> int:
    import torch

    from medbench.bench import train as bench

    # A typo fails before any model is built.
    parsed = [bench.parse_config(c.strip()) for c in (opts.configs or bench.DEFAULT_CONFIGS).split(",") if c.strip()]
    if opts.model and not (Path(opts.model) / "config.json").is_file():
        raise MedbenchError(
            f"--model {opts.model}: not a model directory (no config.json); make one with "
            f"medbench.models.shapes.save_random_model or pass a saved checkpoint"
        )
    if not torch.cuda.is_available():
        raise MedbenchError("bench train needs a CUDA GPU (DeepSpeed, bf16, bitsandbytes)")
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        if opts.model:
            model_dir, name = opts.model, Path(opts.model).name
        else:
            from medbench.models.shapes import save_random_model

            model_dir, name = str(save_random_model(opts.shape, Path(tmp) / opts.shape)), f"{opts.shape}-random"
        gpu = torch.cuda.get_device_name(0).replace(" ", "-")
        gpus = max(g for _, g in parsed)
        out = out_dir / f"train-{name}-{gpu}{f'-x{gpus}' if gpus > 1 else ''}.json"
        result = bench.bench_train(model_dir, parsed, opts.steps, out, opts.fresh)
    print(bench.table(result))
    print(f"wrote {out}")
    return 0


def bench_eval(opts: EvalBenchArguments, out_dir: Path) -> int:
    from medbench.bench import eval as bench
    from medbench.bench.eval import markdown_table
    from medbench.records import provenance
    from medbench.records.io import write_json

    slots = int(opts.slots) if opts.slots.isdigit() else opts.slots
    if slots != "auto" and (isinstance(slots, str) or slots < 1):
        raise MedbenchError(f"--slots {opts.slots}: a whole number >= 1, or auto")
    out_dir.mkdir(parents=True, exist_ok=True)
    if opts.decode_shape:
        import torch

        if not torch.cuda.is_available():
            raise MedbenchError("--decode-shape builds a random model on the GPU: it needs CUDA")
        batches = [int(b) for b in opts.decode_batches.split(",") if b.strip()]
        result = bench.fixed_length_decode(opts.decode_shape, batches, opts.decode_prompt, opts.decode_new)
        result.update(bench="decode", **provenance.provenance())  # the code, versions and hardware that ran
        gpu = result["hardware"]["gpu"].replace(" ", "-")
        path = out_dir / f"decode-{opts.decode_shape}-p{opts.decode_prompt}-n{opts.decode_new}-{gpu}.json"
        write_json(path, result)
        for row in result["rows"]:
            print(f"batch {row['batch']}: {row['output_tokens_per_second']} output tokens/s")
        print(f"wrote {path}")
        return 0
    modes = tuple(m.strip() for m in opts.modes.split(",") if m.strip())
    unknown = sorted(set(modes) - set(bench.MODES))
    if unknown or not modes:
        raise MedbenchError(
            f"--modes: unknown {', '.join(unknown) or '(none given)'}; choose from {', '.join(bench.MODES)}"
        )
    chosen = "".join(f"-{value}" for value in (opts.attn_implementation, opts.dtype) if value != "auto")
    name = (
        f"eval-{opts.model.replace('/', '--')}-{'+'.join(modes)}{f'-limit{opts.limit}' if opts.limit else ''}"
        f"-b{opts.batch_size}{chosen}"
    )

    def path(result: dict) -> Path:
        device = result["device"].replace("cpu: ", "cpu-").replace(" ", "-").replace("/", "-")
        return out_dir / f"{name}-{device}.json"

    # Written after every measurement: a run cut short (a device call's time limit) keeps what it measured.
    kept = ("model", "variant", "limit", "baseline_limit", "study_limit", "flip_sample", "batch_size", "device")
    kept += ("attn_implementation", "dtype", "ablations")
    result = bench.bench_eval(
        bench.EvalBenchOptions(**{k: getattr(opts, k) for k in kept}, modes=modes, slots=slots),
        save=lambda result: write_json(path(result), result),
    )
    if opts.end_to_end:
        stock_limit = opts.end_to_end_limit if opts.stock_limit is None else opts.stock_limit
        result["end_to_end"] = bench.end_to_end(
            opts.model, opts.variant, modes, opts.end_to_end_limit, stock_limit, opts.batch_size
        )
        write_json(path(result), result)
    print(markdown_table(result))
    print(f"wrote {path(result)}")
    return 0
