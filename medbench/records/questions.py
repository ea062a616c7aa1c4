"""Per-question rows of a run: what was asked, what the model answered, and whether it was right.

One place that reads a sample's answer, for the results explorer (medbench/report/site.py) and the letter
distributions. Multiple-choice samples hold one (log-likelihood, is-greedy) pair per option;
generative samples hold the generated text (resps) and the extracted letter (filtered_resps, ""
when nothing parsable was found). `correct` is the sample's own metric, so every count derived
from these rows agrees with record.json.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from medbench.records import io
from medbench.records.reader import ReportError, read_lines

LETTERS = "ABCDE"
# A letter holding more than this share of a run's valid answers is flagged: the model is mostly
# answering one position, not the questions.
DOMINANT_SHARE = 0.5


def question_rows(run_dir: Path, task: str) -> list[dict]:
    """Every question of one task of a run, in samples order."""
    path = io.samples_path(Path(run_dir), task)
    if not path.exists():
        raise ReportError(f"{path}: samples file missing for task {task}")
    rows = []
    for line_no, line in read_lines(path):
        if not line.strip():
            continue
        try:
            rows.append(question_row(json.loads(line)))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, IndexError) as e:
            raise ReportError(f"{path}:{line_no}: unusable sample ({type(e).__name__}: {e})") from None
    return rows


@functools.cache
def _data_rows(dataset: str, exam: str | None, split: str) -> dict[str, dict]:
    from medbench.data.loader import load_rows

    return {r["id"]: r for r in load_rows(dataset, exam, split)}


def data_doc(doc: dict) -> dict:
    """A compacted sample's doc with its question and options read back from the data by id (and rotated as the
    sample's task rotated them); a doc that carries its text, or whose question the data lacks, is returned as is."""
    from medbench.data.loader import DataError
    from medbench.data.rotation import rotate_row

    if "question" in doc or not doc.get("dataset"):
        return doc
    exam = doc.get("exam") if doc["dataset"] == "kormedmcqa" else None
    try:
        row = _data_rows(doc["dataset"], exam, doc.get("split") or "test").get(str(doc["id"]))
    except (DataError, OSError):  # the data folder moved or a split is missing: the row keeps its id, no text
        return doc
    if row is None:
        return doc
    return {**rotate_row(row, doc.get("rotation") or 0), **doc}


def question_row(sample: dict) -> dict:
    """One sample as a row; raises KeyError/TypeError/ValueError on a sample of neither shape."""
    doc = data_doc(sample["doc"])
    metric = metric_of(sample)
    row = {"id": str(doc["id"]), "dataset": doc.get("dataset"), "exam": doc.get("exam")}
    row.update({k: doc[k] for k in ("subject", "year") if doc.get(k) is not None})
    row.update(
        question=doc.get("question", ""),
        options=list(doc.get("options") or []),
        gold=doc.get("answer", ""),
        correct=float(sample[metric]) == 1.0,
    )
    if _is_loglikelihood(sample["filtered_resps"]):
        # Cloze: each option's log-likelihood per character of its text, as lm-eval's acc_norm compares them.
        lengths = [len(o) for o in row["options"]] if metric == "acc_norm" else None
        row.update(_multiple_choice(sample["filtered_resps"], lengths))
    else:
        row.update(_generated(sample))
    return row


def _is_loglikelihood(filtered) -> bool:
    return bool(filtered) and all(
        isinstance(f, (list, tuple)) and isinstance(f[0], (int, float)) and not isinstance(f[0], bool) for f in filtered
    )


def metric_of(sample: dict) -> str:
    """The sample's own correctness metric: exact_match (gen), acc_norm (cloze) or acc (letters)."""
    if "exact_match" in sample:
        return "exact_match"
    return "acc_norm" if "acc_norm" in sample else "acc"


def _multiple_choice(filtered, lengths: list[int] | None = None) -> dict:
    scores = [float(f[0]) for f in filtered]
    if lengths is not None and len(lengths) == len(scores):
        scores = [s / max(n, 1) for s, n in zip(scores, lengths)]
    if len(scores) > len(LETTERS):
        raise ValueError(f"{len(scores)} options, at most {len(LETTERS)} supported")
    # lm-eval scores acc with numpy's argmax, which takes the first of equal maxima; so does this.
    best = max(range(len(scores)), key=lambda i: (scores[i], -i))
    ordered = sorted(scores, reverse=True)
    return {
        "mode": "mc",
        "predicted": LETTERS[best],
        "invalid": False,
        "tie": len(ordered) > 1 and ordered[0] == ordered[1],
        "scores": dict(zip(LETTERS, scores)),
    }


def _generated(sample: dict) -> dict:
    extracted = sample["filtered_resps"][0]
    resps = sample.get("resps") or [[""]]
    output = resps[0][0] if isinstance(resps[0], (list, tuple)) else resps[0]
    if extracted is not None and not isinstance(extracted, str):
        raise TypeError(f"filtered_resps holds {type(extracted).__name__}, expected the extracted letter")
    return {
        "mode": "gen",
        "predicted": extracted or "",
        "invalid": not extracted,
        "tie": False,
        "output": "" if output is None else str(output),
    }


def letter_distribution(rows: list[dict]) -> dict:
    """Gold and predicted letter counts of some questions, and the two letter-only baselines.

    majority_baseline: accuracy of always answering the most frequent gold letter.
    prior_baseline: expected accuracy of answering at random with this run's answer frequencies,
    Σ_l p_pred(l)·p_gold(l), both shares over all questions (so invalid answers score nothing,
    as they do in the run). dominant: the letter holding more than DOMINANT_SHARE of the valid
    answers, or None.
    """
    n = len(rows)
    gold = {letter: 0 for letter in LETTERS}
    predicted = {letter: 0 for letter in LETTERS}
    for row in rows:
        if row["gold"] in gold:
            gold[row["gold"]] += 1
        if not row["invalid"] and row["predicted"] in predicted:
            predicted[row["predicted"]] += 1
    # Every letter any question offers, so a letter never answered still shows as a zero.
    width = max(
        [len(r["options"]) for r in rows] + [LETTERS.index(k) + 1 for k in LETTERS if gold[k] or predicted[k]],
        default=0,
    )
    letters = list(LETTERS[:width])
    valid = sum(predicted.values())
    top = max(letters, key=lambda k: predicted[k], default=None)
    dominant = top if valid and predicted[top] / valid > DOMINANT_SHARE else None
    return {
        "n": n,
        "letters": letters,
        "gold": {k: gold[k] for k in letters},
        "predicted": {k: predicted[k] for k in letters},
        "invalid": sum(1 for r in rows if r["invalid"]),
        "majority_baseline": max(gold.values()) / n if n else None,
        "prior_baseline": sum(predicted[k] * gold[k] for k in letters) / (n * n) if n else None,
        "dominant": dominant,
    }
