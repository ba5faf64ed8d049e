"""Model size and compute measurements.

MACs (multiply-accumulate operations) are measured by running the model once with forward hooks on its
convolution, transposed-convolution and linear layers (and, optionally, batch-norm layers), so the count reflects
the shapes that really flow through the network.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

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


def _layer_macs(layer: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> int:
    """MACs of one call of a hooked layer (biases are not counted).

    Args:
        layer: A ``Conv2d``, ``ConvTranspose2d``, ``Linear`` or batch-norm layer.
        inputs: The positional inputs of the call.
        output: The output of the call.

    Returns:
        Multiply-accumulate operations of the call.
    """
    if isinstance(layer, nn.Conv2d):
        kernel_h, kernel_w = layer.kernel_size
        return output.numel() * (layer.in_channels // layer.groups) * kernel_h * kernel_w
    if isinstance(layer, nn.ConvTranspose2d):
        # Every input element is multiplied into a kernel_h x kernel_w patch of each output channel of its group.
        kernel_h, kernel_w = layer.kernel_size
        return inputs[0].numel() * (layer.out_channels // layer.groups) * kernel_h * kernel_w
    if isinstance(layer, nn.Linear):
        return output.numel() * layer.in_features
    # Batch norm in inference is one multiply-add per element.
    return output.numel()


def count_macs(
    module: nn.Module,
    inputs: Tensor | Sequence[int],
    run: Callable[[nn.Module, Tensor], object] | None = None,
    include_norm: bool = False,
) -> int:
    """Measures the multiply-accumulate operations of one forward pass.

    The module is run once in eval mode under ``torch.no_grad()``; its training flag is restored afterwards.

    Args:
        module: The model.
        inputs: An example input tensor, or its shape (``(C, H, W)`` gets a batch of 1
            prepended). A shape is turned into zeros on the device and dtype of the module's first parameter.
        run: How to run the module on the input; defaults to
            ``module(inputs)``.
        include_norm: Also count one MAC per element of every ``BatchNorm`` output.

    Returns:
        Total MACs over the whole batch (Conv2d, ConvTranspose2d and Linear layers, plus batch norms if
        ``include_norm``).
    """
    if not isinstance(inputs, Tensor):
        shape = tuple(int(s) for s in inputs)
        if len(shape) == 3:
            shape = (1, *shape)
        reference = next(module.parameters(), None)
        device = reference.device if reference is not None else torch.device("cpu")
        dtype = reference.dtype if reference is not None else torch.float32
        inputs = torch.zeros(shape, device=device, dtype=dtype)

    hooked: tuple[type[nn.Module], ...] = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)
    if include_norm:
        hooked = (*hooked, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
    total = 0

    def hook(layer: nn.Module, layer_inputs: tuple[Tensor, ...], output: Tensor) -> None:
        nonlocal total
        total += _layer_macs(layer, layer_inputs, output)

    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, hooked)]
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            if run is None:
                module(inputs)
            else:
                run(module, inputs)
    finally:
        for handle in handles:
            handle.remove()
        module.train(was_training)
    log.debug("Measured %d MACs for %s on input %s", total, type(module).__name__, tuple(inputs.shape))
    return total
