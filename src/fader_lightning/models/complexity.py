"""Model size and compute measurements.

MACs (multiply-accumulate operations) are measured by running the model once under torch's own FLOP counter
(``torch.utils.flop_counter.FlopCounterMode``), so the count reflects the shapes that really flow through the
network and every matrix product or convolution in it, whatever layer issues it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

log = logging.getLogger(__name__)


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Counts the parameters of a module.

    Args:
        module: The module.
        trainable_only: Count only parameters with ``requires_grad=True``.

    Returns:
        Number of scalar parameters.
    """
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def count_macs(
    module: nn.Module, inputs: Tensor | Sequence[int], run: Callable[[nn.Module, Tensor], object] | None = None
) -> int:
    """Measures the multiply-accumulate operations of one forward pass, with ``torch.utils.flop_counter``.

    The module is run once in eval mode under ``torch.no_grad()``; its training flag is restored afterwards. Every
    matrix product and convolution counts (half of the FLOPs torch's counter reports); element-wise operations,
    normalisation and biases do not.

    Args:
        module: The model.
        inputs: An example input tensor, or its shape (``(C, H, W)`` gets a batch of 1
            prepended). A shape is turned into zeros on the device and dtype of the module's first parameter.
        run: How to run the module on the input; defaults to ``module(inputs)``.

    Returns:
        Total MACs over the whole batch.
    """
    if not isinstance(inputs, Tensor):
        shape = tuple(int(s) for s in inputs)
        if len(shape) == 3:
            shape = (1, *shape)
        reference = next(module.parameters(), None)
        device = reference.device if reference is not None else torch.device("cpu")
        dtype = reference.dtype if reference is not None else torch.float32
        inputs = torch.zeros(shape, device=device, dtype=dtype)
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            if run is None:
                module(inputs)
            else:
                run(module, inputs)
    finally:
        module.train(was_training)
    total = counter.get_total_flops() // 2
    log.debug("Measured %d MACs for %s on input %s", total, type(module).__name__, tuple(inputs.shape))
    return total
