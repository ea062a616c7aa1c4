"""The record contract between evaluation, training, the report and the explorer (as lm-eval's
`result_schema.py` states its own). Builders return these types; the reader checks the required
keys derived from them. Keys added after the first records were written are `NotRequired`, so
old run directories stay readable.
"""

from typing import NotRequired, TypedDict


class TaskRecord(TypedDict):
    task: str  # the lm-eval task name (medbench_…)
    dataset: str  # kormedmcqa | medqa
    exam: str  # doctor | nurse | pharm | dentist | usmle
    metric: str  # acc (mc) | exact_match (gen) | acc_norm (cloze)
    n: int
    accuracy: float | None
    stderr: float | None
    invalid: int  # generations with no parsable answer (scored wrong)
    invalid_rate: float | None
    truncated_prompts: int  # prompts cut from the left to prompt_max_tokens
    correct: NotRequired[int]
    ci95_low: NotRequired[float]
    ci95_high: NotRequired[float]
    ci_method: NotRequired[str]
    ties: NotRequired[int]  # questions whose best two choices scored exactly equal
    letters: NotRequired[dict]  # gold/predicted letter counts, majority and prior-matched baselines
    permutation: NotRequired[dict]  # per-rotation, debiased and circular accuracy (--set permute=cyclic)
    prompts_sha256: NotRequired[str]  # the rendered prompts, named: sha256 of lm-eval's prompt hashes in order
    first_prompt: NotRequired[str]  # the first question's prompt as rendered (the samples keep none)


class Timing(TypedDict):
    questions_per_second: float | None  # None for a resumed run (its time covers only what it computed)
    # Every question scored or generated, rotated copies included (a permuted run scores each question k times).
    scorings_per_second: NotRequired[float | None]
    load_seconds: NotRequired[float]
    eval_seconds: NotRequired[float]
    responses_per_second: NotRequired[float | None]
    generated_tokens: NotRequired[int]
    generated_tokens_per_second: NotRequired[float | None]
    gen_engine: NotRequired[dict]  # fast_gen engine -> why it was chosen


class Memory(TypedDict):
    peak_gib: float  # GPU where there is one, else process RSS (records before 0.3: read peak_gpu_gib, peak_rss_gib)
    model_footprint_gib: NotRequired[float]
    peak_rss_gib: NotRequired[float]
    peak_gpu_gib: NotRequired[float | None]


class ChatRecord(TypedDict):
    """How a run used the model's chat template (medbench/prompts/chat.py)."""

    apply: bool
    reason: str
    template_kwargs: dict
    system_instruction: str | None
    fewshot_as_multiturn: bool
    thinking: bool
    template_sha256: NotRequired[str]  # of chat_template.jinja, written beside the record
    end_of_turn: NotRequired[str | None]  # the stop sequence of a chat gen run


class RunRecord(TypedDict):
    """results/runs/<run_id>/record.json"""

    run_id: str
    model: str
    params_b: float | None
    weights: str  # real | unverified | random
    variant: str
    prompt: str  # zeroshot | fewshot | cot
    mode: str  # mc | gen
    device: str
    tasks: list[TaskRecord]
    timing: Timing
    memory: Memory
    hardware: dict
    git_sha: str | None
    created: NotRequired[str]
    model_source: NotRequired[str]
    limit: NotRequired[int | None]
    sample: NotRequired[int | None]
    settings: NotRequired[dict]
    generation_kwargs: NotRequired[dict | None]
    adapter: NotRequired[str | None]
    quantization: NotRequired[dict | None]
    awq_route: NotRequired[str | None]  # how an official AWQ checkpoint was made loadable (models/awq_convert.py)
    chat: NotRequired[ChatRecord]  # absent in records written before chat templates
    dtype: NotRequired[str]
    attn_implementation: NotRequired[str]
    sanity_perplexity: NotRequired[float | None]
    kormedmcqa_average: NotRequired[float | None]
    responses: NotRequired[dict]
    canary: NotRequired[dict | None]  # questions re-scored alone vs batched: checked, max_abs_diff, passed
    versions: NotRequired[dict]
    # processes (data parallel), mode (single | data_parallel | sharded), devices, placement (medbench/models/
    # placement.py: why one device or sharded, estimated size, free memory, device_map summary), GPU peaks
    parallel: NotRequired[dict]
    notes: NotRequired[list[str]]
    git_dirty: NotRequired[list[str] | None]  # the tracked files that differed from git_sha's commit
    data_files: NotRequired[dict[str, str]]  # {file under data/: sha256} of every file the run read, verified
    data_pinned: NotRequired[bool]  # every file read has the sha256 the package pins (medbench/data/checksums.py)
    weights_fingerprint: NotRequired[dict]  # {role: fingerprint} of the weights loaded (models/fingerprint.py)
    checkpoint: NotRequired[str | None]  # the fine-tuned folder under checkpoints/ (another seed or profile)
    training_record: NotRequired[dict | None]  # the train_record.json fine-tuned weights came from (sha256, seed, …)
    # The code that ran (medbench/records/provenance.py): the sources' fingerprint, the git commit and how it is known
    medbench_version: NotRequired[str | None]
    source_fingerprint: NotRequired[dict]
    git_sha_status: NotRequired[str]
    attention: NotRequired[dict]  # implementation, and the SDPA kernels that could run on CUDA
    letter_logits: NotRequired[str | None]  # the dtype of mc's answer-letter logits and their normaliser
    seeds: NotRequired[dict]


class TrainRecord(TypedDict):
    """checkpoints/<alias>-<method>/train_record.json, copied to results/train/<alias>-<method>[-<profile>].json"""

    model: str
    method: str
    examples: int
    steps: int
    epochs: float | None
    train_tokens_per_second: float | None
    mfu: float | None
    memory: dict
    final_train_loss: float | None
    final_eval_loss: float | None
    device: str
    gpus: int
    hardware: dict
    versions: dict
    git_sha: str | None
    created: NotRequired[str]
    params_b: NotRequired[float | None]
    model_source: NotRequired[str]
    method_config: NotRequired[dict]
    profile: NotRequired[str]  # `just train --profile`: study (the default) or fast (trainers/profiles/)
    training_arguments: NotRequired[dict]
    output_dir: NotRequired[str]
    data: NotRequired[dict]
    tokens_trained: NotRequired[int]
    tokens_this_run: NotRequired[int]
    resumed_from: NotRequired[str | None]
    resumed_from_step: NotRequired[int | None]
    wall_seconds: NotRequired[float]
    train_seconds: NotRequired[float]
    params: NotRequired[dict]
    mfu_formula: NotRequired[str]
    peak_bf16_flops_per_gpu: NotRequired[float | None]
    steady_state: NotRequired[dict | None]
    mean_train_loss_this_run: NotRequired[float | None]
    precision: NotRequired[str]
    model_dtype: NotRequired[str]
    attn_implementation: NotRequired[str]
    quantization: NotRequired[dict | None]
    deepspeed: NotRequired[dict | None]
    notes: NotRequired[list[str]]
    loss_curve: NotRequired[str | None]
    git_dirty: NotRequired[list[str] | None]
    medbench_version: NotRequired[str | None]
    source_fingerprint: NotRequired[dict]
    git_sha_status: NotRequired[str]
    loss_history: NotRequired[list[dict]]  # every logged train and held-out loss, by optimizer step
    loss_floor: NotRequired[dict]  # the letter prior's loss: what a model that knows nothing reaches
    best_checkpoint: NotRequired[dict | None]  # the held-out-best step kept (load_best_model_at_end)
    published_as: NotRequired[str]  # results/train/<name>.json
    contaminated: NotRequired[dict | None]  # a positive control: the test questions it trained on


def required_keys(record_type) -> tuple[str, ...]:
    """The keys every record of this type has, in declaration order."""
    return tuple(k for k in record_type.__annotations__ if k in record_type.__required_keys__)


def all_keys(record_type) -> frozenset[str]:
    return frozenset(record_type.__annotations__)
