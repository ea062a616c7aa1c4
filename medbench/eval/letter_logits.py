"""The answer letters' logits in fp32, from the final hidden state and the output head's rows (fast mc scoring)."""

from __future__ import annotations

import torch


def exact_logits(hidden: torch.Tensor, head, tokens: list[int], config) -> torch.Tensor:
    """fp32 logits of `tokens` from the final hidden state (after the final norm) and the head's rows."""
    weight = head.weight[tokens].float()
    hidden = hidden.to(weight.device).float()  # sharded: the final norm and the head may sit on different GPUs
    # One matrix-vector product per token: a token's logit must not depend on which other tokens were asked
    # for (one product of varying width picks different kernels, and the last bit moves).
    out = torch.stack([hidden @ weight[k] for k in range(len(tokens))], dim=1)
    if getattr(head, "bias", None) is not None:
        out = out + head.bias[tokens].float()
    cap = getattr(config, "final_logit_softcapping", None)
    if cap:  # Gemma 2 style soft-capping, applied by the model after the head
        out = torch.tanh(out / cap) * cap
    return out
