"""medbench: small LLMs on medical licensing exams (MedQA, KorMedMCQA), fine-tuned and quantized.

The package map, lowest layer first; a layer imports only the layers above it in this list:

    paths, errors, options,   leaf helpers: every folder (read at call time), the one user-error
    overrides, settings,      base class, dataclass options, typed --set values, the evaluation
    stats                     settings (the study's defaults), statistics
    data/     loader (one canonical row, validated), checksums, hub schema both ways, contamination
    records/  the record contract (schema), provenance, reading and writing run directories,
              per-question rows from samples
    models/   registry (models.yaml), variants (variants.yaml), loading, placement (one GPU or sharded),
              embedded 270M, shapes, oversize shapes, AWQ
    eval/     the run (lm-eval simple_evaluate + our HF model), data-parallel processes, answers, task
              hooks, the prompts README, the consistency check against lm-eval's built-in task
    report/   summary.csv, paired comparisons, chart, training tables, the README block, the explorer
    cli/      `medbench COMMAND`: one module per subcommand; the only importer of `trainers`

`trainers/` (top level) sits beside eval: it imports data, models and records; nothing in the
evaluation side (data, models, records, eval, report) ever imports it.
"""
