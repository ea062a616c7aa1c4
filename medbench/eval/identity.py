"""What a run's cached answers measured: the weights, the data and the versions that change scores.

The identity goes into run_config.json beside the arguments; a run id whose identity changed
(retrained weights, an edited data file, another transformers) is refused with the reason, never
resumed from answers that measured something else.
"""

from __future__ import annotations

from medbench.models.fingerprint import changed_files

# The packages whose versions change a score (the harness itself included).
SCORE_PACKAGES = ("medbench", "transformers", "lm_eval", "torch")


def run_identity(weights: dict[str, dict], data: dict[str, str], versions: dict[str, str | None]) -> dict:
    return {"weights": weights, "data": data, "versions": {k: versions.get(k) for k in SCORE_PACKAGES}}


def identity_changes(previous: dict | None, current: dict) -> list[str]:
    """Why a run with identity `previous` cannot be resumed as `current` (empty: it can)."""
    if not isinstance(previous, dict) or set(previous) != set(current):
        return [
            "it was started by an older medbench, which did not record the weights, data and versions its "
            "answers measured"
        ]
    reasons = []
    old_w, new_w = previous["weights"] or {}, current["weights"]
    for role in sorted(set(old_w) | set(new_w)):
        if role not in old_w or role not in new_w:
            reasons.append(
                f"it was started with no {role}"
                if role not in old_w
                else f"it was started with a {role}, which this run does not load"
            )
        elif changed := changed_files(old_w[role], new_w[role]):
            reasons.append(f"the {role} weights changed ({', '.join(changed)})")
    old_d, new_d = previous["data"] or {}, current["data"]
    if changed := sorted(name for name in set(old_d) | set(new_d) if old_d.get(name) != new_d.get(name)):
        reasons.append(f"the data changed ({', '.join(changed)})")
    for package in SCORE_PACKAGES:
        a, b = (previous["versions"] or {}).get(package), current["versions"].get(package)
        if a != b:
            reasons.append(f"{package} was {a}, now {b}")
    return reasons
