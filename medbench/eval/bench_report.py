"""`just bench eval`'s report: the record as README-ready markdown rows."""

from __future__ import annotations


def _fmt(x, spec: str) -> str:
    return "–" if x is None else format(x, spec)


def markdown_table(result: dict) -> str:
    """README-ready rows: one per mode and method, the speed-up on the same questions, and answer agreement."""
    device = result["device"]
    lines = [
        "| mode | method | questions | seconds | questions/s | generated tok/s | peak GiB | speed-up, same "
        "questions | same answers as medbench | device |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for mode, r in result["modes"].items():
        for name, m in r.get("methods", {}).items():
            if mode == "mc":
                ratio = r["speedup_over_stock_hf"].get(name)
                speed = f"{ratio:.2f}x stock_hf" if name != "stock_hf" else "1"
                agree = r["same_answer_as_medbench"].get(name)
                same = (
                    "–" if agree is None else f"{agree['questions'] - agree['different']}/{agree['questions']} letters"
                )
            else:
                speed = {
                    "medbench_on_stock_questions": f"{r.get('speedup_over_stock_hf', 0):.2f}x stock_hf",
                    "medbench_on_study_questions": f"{r.get('speedup_over_study', 0):.2f}x study",
                    "medbench_static": f"{r.get('static_speedup_over_dynamic', 0):.2f}x medbench",
                }.get(name, "")
                agree = {
                    "stock_hf": r.get("same_text_as_stock_hf"),
                    "study": r.get("same_tokens_as_study"),
                    "medbench_static": r.get("static_same_tokens_as_dynamic"),
                }.get(name)
                what = "texts" if name == "stock_hf" else "token ids"
                same = (
                    "–" if agree is None else f"{agree['questions'] - agree['different']}/{agree['questions']} {what}"
                )
            lines.append(
                f"| {mode} | {name} | {m['questions']} | {m['seconds']:.1f} | {m['questions_per_second']:.2f} "
                f"| {_fmt(m.get('generated_tokens_per_second'), '.0f')} | {_fmt(m.get('peak_gpu_gib'), '.2f')} "
                f"| {speed} | {same} | {device} |"
            )
    load = result["load_seconds"]
    flips = result["modes"].get("mc", {}).get("batch1_flips")
    if flips:
        lines.append("")
        lines.append(
            f"Batching vs batch size 1 (mc, seeded sample): {flips['different']} of {flips['questions']} letters "
            f"differ (largest |log p| difference {flips['max_abs_logprob_diff']:.3g})."
        )
    lines.append("")
    lines.append(
        f"Load: medbench {load['medbench']} s (with its perplexity check), lm-eval's HFLM "
        f"{_fmt(load['stock_hf'], '.2f')} s. Batch size {result['batch_size']}, {result['dtype']}, "
        f"{result['attn_implementation']}."
    )
    return "\n".join(lines)
