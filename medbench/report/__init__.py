"""`just report`: tables, the comparison plan's paired statistics, position bias, contamination, the chart against
the KorMedMCQA paper, generated docs and the static explorer, from records on disk only (never a model)."""

from medbench.exports import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {"build_report": "build", "ReportError": "build"})
