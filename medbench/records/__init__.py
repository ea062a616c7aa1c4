"""The record contract and everything that reads or writes records: the typed schema (RunRecord, TaskRecord,
TrainRecord), provenance, run folders on disk, per-question rows, the reader the report trusts, answer
comparison between two runs, and merging results folders from several machines."""

from medbench.exports import lazy_exports

__all__, __getattr__ = lazy_exports(
    __name__,
    {
        "RunRecord": "schema",
        "TaskRecord": "schema",
        "TrainRecord": "schema",
        "RecordError": "io",
        "read_json": "io",
        "write_json": "io",
        "provenance": "provenance",
        "ReportError": "reader",
        "Run": "reader",
        "load_runs": "reader",
        "question_rows": "questions",
        "merge": "merge",
        "plan_merge": "merge",
    },
)
