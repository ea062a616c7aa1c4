# medbench: `just --list` is the command reference. Every recipe calls `medbench COMMAND` (medbench/cli/).
set positional-arguments

python := env_var_or_default("PYTHON", "python")
medbench := python + " -m medbench.cli"

# List the recipes
default:
    @just --list

# Install medbench and its test tools into the current Python (CPU torch first, so pip takes no CUDA build)
setup:
    bash scripts/setup.sh

# Verify the vendored data (sha256) and validate every row; --from-hub also fetches the hub copies
data *args:
    {{medbench}} data "$@"

# The embedded Gemma 3 270M on a seeded sample of every task (--model smollm2-135m: the second real model)
demo *args:
    {{medbench}} demo "$@"

# Evaluate: just eval MODEL [VARIANT] [PROMPT] [--mode mc|gen] [--tasks …] [--limit N] [--set key=value] [--gpus N]
eval *args:
    {{medbench}} eval "$@"

# Regenerate tasks/README.md (rendered prompts) from the task YAMLs
tasks-readme *args:
    {{medbench}} tasks-readme "$@"

# Run the test suite (CPU, tiny models and the two real small models): whole files on one worker per core (at most 4)
test *args:
    {{python}} -m pytest -n auto --maxprocesses 4 --dist loadfile "$@"

# The fast loop: every test that loads no model and starts no subprocess (seconds)
test-fast *args:
    {{python}} -m pytest -m "not model and not slow" -q "$@"

# The rest of the suite: tests that load a model or start processes (CI runs it beside test-fast)
test-models *args:
    {{python}} -m pytest -m "model or slow" "$@"

# Lint and check formatting of every Python file
lint:
    {{python}} -m ruff check medbench trainers tests scripts tasks
    {{python}} -m ruff format --check medbench trainers tests scripts tasks

# Tables, the plan's paired comparisons, position bias, contamination and the chart, from records only; rewrites the README's results block and docs/results.md
report *args:
    {{medbench}} report "$@"

# Re-check records against what they say they measured: data hashes, the code's fingerprint, the weights where present
verify *args:
    {{medbench}} verify "$@"

# Compare the answers of runs of the same tasks question by question: just compare RUN_A RUN_B…
compare *args:
    {{medbench}} compare "$@"

# Merge results folders gathered from several machines into results/ (run ids unique; identical runs once, differing ones refused)
merge *args:
    {{medbench}} merge "$@"

# The benchmark suite: gemma3-270m, smollm2-135m and every alias in MEDBENCH_SUITE, x --variants x --prompts; --shard I/N runs one machine's share; other arguments go to each eval
suite *args:
    {{medbench}} suite "$@"

# Build the GPU image `bench`, starting the Docker daemon and making the Debian base if needed (arguments go to docker build, e.g. --no-cache or --build-arg MEDBENCH_UID=$(id -u))
docker-build *args:
    {{python}} docker/image.py build "$@"

# Prove `bench` runs: rebuild after a one-line change, medbench --help, the demo, an eval into a mounted results/, the GPU packages' checks; writes results/bench/docker-smoke.json
docker-smoke:
    {{python}} docker/image.py smoke

# Run the image on all GPUs with results/ and the caches mounted; no arguments runs `just suite`
docker-run *args:
    mkdir -p results "${HF_HOME:-$HOME/.cache/huggingface}" "${MEDBENCH_CACHE:-$HOME/.cache/medbench}"
    docker run --rm --gpus all -e HF_HUB_OFFLINE -e HF_TOKEN -e MEDBENCH_SUITE \
        -v "{{justfile_directory()}}/results:/opt/medbench/results" \
        -v "${HF_HOME:-$HOME/.cache/huggingface}:/cache/huggingface" \
        -v "${MEDBENCH_CACHE:-$HOME/.cache/medbench}:/cache/medbench" \
        bench "$@"

# Benchmarks printing side-by-side ratios: `just bench quant` = bf16 vs bitsandbytes NF4, `just bench train` = training speed per method, `just bench eval` = our scoring and generation vs stock lm-eval
bench *args:
    {{medbench}} bench "$@"

# Make an AWQ checkpoint (checkpoints/MODEL-awq) with llmcompressor, in an environment of its own (see docs/)
quantize-awq *args:
    {{medbench}} quantize-awq "$@"

# Fine-tune: just train MODEL METHOD (full|lora|qlora) [--profile study|fast|protocol] [--seed N] [--positive-control DATASET] [--mix english|korean|both] [--deepspeed zero2|zero3|none] [--gpus N] [--max-steps N] [--force]
train *args:
    {{medbench}} train "$@"

# Upstream consistency: our 5-shot KorMedMCQA vs lm-eval's built-in kormedmcqa on the same model, rows and settings (results/consistency/)
consistency *args:
    {{medbench}} consistency "$@"
