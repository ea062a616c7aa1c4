"""results/accuracy_vs_params.{png,svg}: our runs against the KorMedMCQA paper's models, by size."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on CI or the eval machines; also keeps pyplot state out of it

from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from medbench.report.reference import PROTOCOL, PaperResult

# (key in PaperResult.accuracy, panel title, (dataset, exam) of our summary rows, chance level in %)
PANELS = (
    ("doctor", "KorMedMCQA doctor", ("kormedmcqa", "doctor"), 20),
    ("nurse", "KorMedMCQA nurse", ("kormedmcqa", "nurse"), 20),
    ("pharm", "KorMedMCQA pharm", ("kormedmcqa", "pharm"), 20),
    ("dentist", "KorMedMCQA dentist", ("kormedmcqa", "dentist"), 20),
    ("average", "KorMedMCQA average (test-size weighted)", ("kormedmcqa", "average"), 20),
    ("medqa", "MedQA (USMLE, 4 options)", ("medqa", "usmle"), 25),
)
PROMPT_MARKERS = {("zeroshot", "mc"): "D", ("zeroshot", "gen"): "v", ("fewshot", "gen"): "^", ("cot", "gen"): "P"}
VARIANT_COLOURS = (
    "tab:blue",
    "tab:orange",
    "tab:green",
    "tab:red",
    "tab:purple",
    "tab:brown",
    "tab:pink",
    "tab:olive",
    "tab:cyan",
)
REFERENCE_COLOUR = "0.55"
LEGEND_COLUMNS = 4
FOOTNOTE = (
    f"Grey: the KorMedMCQA paper (Kweon et al., arXiv 2403.01469 v3), {PROTOCOL}, which is our `fewshot` "
    "prompt; our runs of every prompt are shown, with the prompt/mode in the legend.\n"
    "Closed models' sizes are guesses. Our error bars: 95% percentile bootstrap over questions. "
    "Our points of one size are spread slightly left/right so they stay readable."
)


def _series_key(row: dict) -> tuple:
    return (row["model"], row["variant"], row["prompt"], row["mode"])


def render_chart(rows: list[dict], paper: list[PaperResult], out_base: Path) -> list[Path]:
    """Draw every panel (reference points even where we have no run) and write .png and .svg.

    rows: summary rows (one per run and task, the exam average included) with params_b, accuracy
    and ci95_low/ci95_high as fractions. Rows without params_b cannot be placed and are skipped.
    """
    ours = [r for r in rows if r.get("params_b") and r.get("accuracy") is not None]
    series = sorted({_series_key(r) for r in ours})
    variants = sorted({r["variant"] for r in ours})
    colour = {v: VARIANT_COLOURS[i % len(VARIANT_COLOURS)] for i, v in enumerate(variants)}
    # Runs of one model share an x; a small multiplicative dodge per series separates them.
    dodge = {s: 10 ** (0.04 * (i - (len(series) - 1) / 2)) for i, s in enumerate(series)}

    sizes = [p.params_b for p in paper if p.params_b] + [r["params_b"] for r in ours]
    xlim = (
        (10 ** math.floor(math.log10(min(sizes)) - 0.2), 10 ** math.ceil(math.log10(max(sizes)) + 0.2))
        if sizes
        else (0.1, 1000)
    )

    # svg.hashsalt: fixed ids; svg.fonttype none: text stays text (searchable, and far faster to write).
    with matplotlib.rc_context({"svg.hashsalt": "medbench", "svg.fonttype": "none", "font.size": 8}):
        fig = Figure(figsize=(16, 10.5))
        axes = fig.subplots(2, 3).ravel()
        for ax, (key, title, (dataset, exam), chance) in zip(axes, PANELS):
            _reference(ax, paper, key)
            for r in ours:
                if (r["dataset"], r["exam"]) != (dataset, exam):
                    continue
                acc, low, high = (100 * r[k] for k in ("accuracy", "ci95_low", "ci95_high"))
                ax.errorbar(
                    r["params_b"] * dodge[_series_key(r)],
                    acc,
                    yerr=[[acc - low], [high - acc]],
                    fmt=PROMPT_MARKERS.get((r["prompt"], r["mode"]), "o"),
                    color=colour[r["variant"]],
                    markersize=6,
                    capsize=2,
                    elinewidth=1,
                    zorder=3,
                )
            ax.axhline(chance, color="0.8", linestyle=":", linewidth=1, zorder=0)
            ax.set_xscale("log")
            ax.set_xlim(*xlim)
            ax.set_ylim(0, 100)
            ax.set_title(title)
            ax.set_xlabel("parameters (billions, log scale)")
            ax.set_ylabel("accuracy (%)")
            ax.grid(True, which="major", color="0.92", linewidth=0.6)
        handles = _legend(series, colour)
        legend_rows = math.ceil(len(handles) / LEGEND_COLUMNS)
        fig.legend(
            handles=handles,
            loc="lower center",
            ncol=LEGEND_COLUMNS,
            frameon=False,
            fontsize=7,
            bbox_to_anchor=(0.5, 0.04),
        )
        fig.suptitle(
            f"Accuracy vs model size: our runs (colour = variant, marker = prompt/mode) "
            f"and the KorMedMCQA paper ({PROTOCOL} = our fewshot prompt)",
            fontsize=11,
        )
        fig.text(0.5, 0.005, FOOTNOTE, ha="center", va="bottom", fontsize=7, color="0.3")
        # The legend grows with the number of our configurations; the panels make room for it.
        fig.subplots_adjust(left=0.05, right=0.99, top=0.93, bottom=0.1 + 0.016 * legend_rows, hspace=0.3, wspace=0.18)
        out_base.parent.mkdir(parents=True, exist_ok=True)
        paths = [out_base.with_suffix(".png"), out_base.with_suffix(".svg")]
        fig.savefig(paths[0], dpi=150)
        fig.savefig(paths[1], metadata={"Date": None})  # no timestamp: the same results give the same file
    return paths


def _reference(ax, paper: list[PaperResult], key: str) -> None:
    placed = [p for p in paper if p.accuracy.get(key) is not None and p.params_b is not None]
    for closed in (False, True):  # one scatter per marker: hundreds of single-point artists draw slowly
        group = [p for p in placed if p.size_is_estimate == closed]
        if group:
            ax.scatter(
                [p.params_b for p in group],
                [p.accuracy[key] for p in group],
                marker="s" if closed else "o",
                s=14,
                facecolors="none" if closed else REFERENCE_COLOUR,
                edgecolors=REFERENCE_COLOUR,
                linewidths=0.8,
                zorder=2,
            )
    for p in placed:
        ax.annotate(
            p.model,
            (p.params_b, p.accuracy[key]),
            xytext=(3, 1),
            textcoords="offset points",
            fontsize=4,
            color="0.45",
            zorder=2,
        )
    for p in paper:
        if p.params_b is None and p.accuracy.get(key) is not None:  # the human examinees: a level, not a size
            ax.axhline(p.accuracy[key], color=REFERENCE_COLOUR, linestyle="--", linewidth=0.8, zorder=1)
            ax.annotate(
                p.model,
                (1, p.accuracy[key]),
                xycoords=("axes fraction", "data"),
                xytext=(-2, 2),
                textcoords="offset points",
                ha="right",
                fontsize=5,
                color="0.4",
            )


def _legend(series: list[tuple], colour: dict) -> list[Line2D]:
    handles = [
        Line2D(
            [],
            [],
            linestyle="",
            marker="o",
            color=REFERENCE_COLOUR,
            markersize=5,
            label=f"paper: open-weights model ({PROTOCOL})",
        ),
        Line2D(
            [],
            [],
            linestyle="",
            marker="s",
            markerfacecolor="none",
            markeredgecolor=REFERENCE_COLOUR,
            markersize=5,
            label="paper: closed model (est. size)",
        ),
        Line2D([], [], linestyle="--", color=REFERENCE_COLOUR, label="paper: human examinees"),
    ]
    for model, variant, prompt, mode in series:
        handles.append(
            Line2D(
                [],
                [],
                linestyle="",
                marker=PROMPT_MARKERS.get((prompt, mode), "o"),
                color=colour[variant],
                markersize=6,
                label=f"ours: {model} [{variant}], {prompt}/{mode}",
            )
        )
    return handles
