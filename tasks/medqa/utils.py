from pathlib import Path

import yaml

from medbench.prompts.tasks import ExtractAnswerFilter, load_dataset  # noqa: F401

RATIONALES_PATH = Path(__file__).with_name("cot_rationales.yaml")


def load_dataset_cot(**kwargs):
    """MedQA with each CoT shot's rationale (cot_rationales.yaml) as the dev row's `cot`.

    The task's sampler takes the first dev rows in order; a rationale for any other row, or a shot
    without one, would silently turn a shot's target into an empty string, so either is refused.
    """
    ds = load_dataset(**kwargs)
    rationales = yaml.safe_load(RATIONALES_PATH.read_text())
    shots = ds["dev"]["id"][: len(rationales)]
    if shots != list(rationales):
        raise ValueError(
            f"{RATIONALES_PATH.name} must hold the first {len(rationales)} dev rows, in order "
            f"({shots}); it holds {list(rationales)}"
        )
    ds["dev"] = ds["dev"].remove_columns("cot").add_column("cot", [rationales.get(i, "") for i in ds["dev"]["id"]])
    return ds
