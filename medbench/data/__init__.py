"""The benchmark data: vendored files (or hub copies) as one validated canonical row, their checksums, the hub
schema both ways, option rotation, and the training/test overlap check. Nothing here knows about models or
prompts."""

from medbench.exports import lazy_exports

__all__, __getattr__ = lazy_exports(
    __name__,
    {
        "KORMEDMCQA_EXAMS": "loader",
        "LETTERS": "loader",
        "OPTION_COUNT": "loader",
        "DataError": "loader",
        "Source": "loader",
        "load_rows": "loader",
        "source_path": "loader",
        "verify_checksums": "checksums",
        "verify_splits": "checksums",
        "fetch_from_hub": "hub",
        "write_hub_jsonl": "hub",
        "contamination": "contamination",
        "rotate_row": "rotation",
    },
)
