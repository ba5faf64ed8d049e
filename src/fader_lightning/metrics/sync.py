"""Gathering metric states kept on the CPU across DDP ranks."""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor
from torchmetrics.utilities.distributed import gather_all_tensors


def gather_on_cpu(tensor: Tensor, group: Any | None = None) -> list[Tensor]:
    """Every rank's copy of a state, on the CPU, for ``torchmetrics.Metric(dist_sync_fn=...)``.

    NCCL only moves CUDA tensors, so CPU states travel through the current CUDA device there and come back to the
    CPU; with gloo they are gathered where they are. Ranks may hold different numbers of rows.

    Args:
        tensor: This rank's state.
        group: The process group (``None``: the world).

    Returns:
        One tensor per rank, in rank order, on the CPU.
    """
    device = tensor.device
    if dist.get_backend(group) == dist.Backend.NCCL and device.type == "cpu":
        device = torch.device("cuda", torch.cuda.current_device())
    return [gathered.cpu() for gathered in gather_all_tensors(tensor.to(device), group)]


def state_batches(state: list[Tensor] | Tensor) -> list[Tensor]:
    """A list state's batches: the list itself, or the one tensor a distributed sync concatenated it into."""
    return [state] if isinstance(state, Tensor) else state
