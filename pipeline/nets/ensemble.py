"""An ensemble of networks of one architecture, trained from different initialisations, that averages them.

Classification members are averaged in probability space (the mean of their softmax outputs), and the ensemble
returns the log of that mean, so ``softmax(ensemble(x))`` is exactly the averaged probability and every caller
that treats outputs as logits keeps working. Regression members' outputs are averaged directly.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class Ensemble(nn.Module):
    """Average ``members`` (each mapping the same input to (B, K) logits, or (B, 1) regression values).

    Args:
        members: The trained networks, all of one spec.
        task: ``classification`` (average probabilities) or ``regression`` (average values).
    """

    def __init__(self, members: list[nn.Module], task: str) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        if task not in ("classification", "regression"):
            raise ValueError(f"task: expected 'classification' or 'regression', got {task!r}")
        self.members = nn.ModuleList(members)
        self.task = task

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = torch.stack([member(x) for member in self.members])  # (M, B, K)
        if self.task == "regression":
            return outputs.mean(dim=0)  # (B, 1)
        # log(mean_m softmax(z_m)) computed stably as logsumexp_m(log_softmax(z_m)) - log M
        return torch.logsumexp(torch.log_softmax(outputs, dim=-1), dim=0) - math.log(len(self.members))  # (B, K)
