# medbench: `just --list` is the command reference.
set positional-arguments

python := env_var_or_default("PYTHON", "python")

# List the recipes
default:
    @just --list

# Install medbench and its test tools into the current Python (CPU torch first, so pip takes no CUDA build)
setup:
    bash scripts/setup.sh

# Verify the vendored data (sha256) and validate every row; --from-hub also fetches the hub copies
data *args:
    {{python}} -m harness.cli data "$@"

# The embedded Gemma 3 270M on a seeded sample of every task (about 5 minutes on 2 CPU cores)
demo *args:
    {{python}} -m harness.cli demo "$@"

# Evaluate: just eval MODEL [VARIANT] [PROMPT] [--mode mc|gen] [--tasks …] [--limit N] [--set key=value]
eval *args:
    {{python}} -m harness.cli eval "$@"

# Regenerate tasks/README.md (rendered prompts) from the task YAMLs
tasks-readme *args:
    {{python}} -m harness.cli tasks-readme "$@"

# Run the test suite (CPU, tiny models and the embedded 270M)
test *args:
    {{python}} -m pytest "$@"

# Lint the Python code
lint:
    {{python}} -m ruff check harness trainers tests

# Tables, paired comparisons, contamination and the chart, from results/ only (seconds)
report *args:
    {{python}} -m harness.report "$@"
