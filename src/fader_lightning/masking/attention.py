"""EAR's suspected-defect mask: the tokens holding most of a DINO ViT's CLS attention."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any, ClassVar

import timm
import torch
import torch.nn.functional as F
from safetensors.torch import load_file as load_safetensors
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import resample_abs_pos_embed
from torch import Tensor, nn

from fader_lightning.errors import CheckpointError, ConfigError
from fader_lightning.masking.base import MaskGenerator, check_images, positive_int, to_mask, unit_fraction

log = logging.getLogger(__name__)

EXAMPLE_MODEL = "vit_small_patch8_224.dino"
"""str: A timm ViT that fits, named in error messages (the configured one is ``conf/masking/attention.yaml``'s)."""

_STATE_DICT_WRAPPERS = ("state_dict", "model")
_KEY_PREFIXES = ("module.", "backbone.")
_ATTENTION_ATTRIBUTES = ("qkv", "num_heads", "scale", "q_norm", "k_norm")


def top_mass_tokens(attention: Tensor, theta: float) -> Tensor:
    """Select, per row, the fewest highest-attention tokens whose attention mass reaches ``theta``.

    Tokens are sorted by decreasing attention and kept while the mass of the tokens before them is below ``theta``
    (DINO's visualisation rule): the kept mass is ``>= theta`` and dropping the smallest kept token brings it below
    ``theta``.

    Args:
        attention: Non-negative attention ``(B, N)`` (normalised here to sum to one per row).
        theta: Attention mass to keep, in ``(0, 1]``.

    Returns:
        Boolean ``(B, N)``, ``True`` for the kept tokens.
    """
    probs = attention.double()
    probs = probs / probs.sum(dim=-1, keepdim=True)
    values, order = probs.sort(dim=-1, descending=True)
    mass_before = F.pad(values.cumsum(dim=-1)[:, :-1], (1, 0))
    keep = torch.zeros_like(values, dtype=torch.bool)
    return keep.scatter_(-1, order, mass_before < theta)


class AttentionMask(MaskGenerator):
    """Mask the image regions a self-supervised ViT attends to (EAR's suspected-defect mask).

    The images are resized to ``image_size``, ImageNet-normalised and fed to the ViT; the CLS-to-patch attention of
    the last block, averaged over heads, is recomputed from that block's ``qkv`` projection by a forward hook
    (timm's fused attention does not return weights). The tokens holding the top ``theta`` of the attention mass
    (:func:`top_mass_tokens`) are masked, and the token grid is upsampled (nearest) to the image size.

    The ViT is frozen: eval mode (kept by :meth:`train`), ``requires_grad=False``, run under ``torch.no_grad``. Its
    parameters are registered, so moving this module moves the ViT and a parent's ``state_dict`` includes it.

    Weights come from ``weights_path`` (a PyTorch or safetensors state dict of ``model_name``, optionally wrapped in
    ``{"state_dict": ...}`` / ``{"model": ...}`` and prefixed with ``module.`` / ``backbone.``, e.g. DINO's
    ``dino_deitsmall8_pretrain.pth``), else from the Hugging Face hub through timm when ``pretrained``, else they
    are random (only useful for tests).

    Args:
        theta: Attention mass to mask, in ``(0, 1]``.
        model_name: timm ViT name with a fused-``qkv`` attention (``vit_*``, ``deit_*``).
        image_size: Side of the square ViT input, a multiple of the patch size.
        weights_path: State dict file; ``None`` to use ``pretrained``.
        pretrained: Without ``weights_path``, download timm's pretrained weights (``True``) or keep a random
            initialisation (``False``).

    Raises:
        ConfigError: If a setting is invalid or the model is not a supported ViT.
        CheckpointError: If the weights file is missing or does not fit, or the pretrained weights cannot be fetched.
    """

    name: ClassVar[str] = "attention"

    deterministic = True
    partitions = False
    graph_masks_unavailable = (
        "its masks come from a DINO ViT of its own (a second network, whose weights checkpoints do not store) "
        "followed by a sort of the attention mass"
    )

    def __init__(
        self,
        model_name: str,
        theta: float = 0.6,
        image_size: int = 224,
        weights_path: str | Path | None = None,
        pretrained: bool = True,
    ) -> None:
        super().__init__()
        self.theta = unit_fraction("theta", theta, allow_zero=False)
        self.image_size = positive_int("image_size", image_size)
        if not isinstance(model_name, str) or not timm.is_model(model_name):
            raise ConfigError(f"model_name={model_name!r} is not a timm model; use a timm ViT such as {EXAMPLE_MODEL}")
        self.model_name = model_name
        self.weights_path = None if weights_path is None else Path(weights_path).expanduser()
        self.model = self._create_model(pretrained)
        self.model.eval()
        self.model.requires_grad_(False)
        self.weights_digest = _state_digest(self.model)
        mean = self.model.pretrained_cfg.get("mean", IMAGENET_DEFAULT_MEAN)
        std = self.model.pretrained_cfg.get("std", IMAGENET_DEFAULT_STD)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def _create_model(self, pretrained: bool) -> nn.Module:
        """Build the ViT and load its weights.

        Args:
            pretrained: Whether to download timm's weights when there is no ``weights_path``.

        Returns:
            nn.Module: The timm ViT.

        Raises:
            ConfigError: If the model is not a supported ViT.
            CheckpointError: If the weights cannot be loaded.
        """
        if self.weights_path is not None and not self.weights_path.is_file():
            raise CheckpointError(f"weights_path={self.weights_path} does not exist; {self._weights_fix()}")
        download = self.weights_path is None and pretrained
        try:
            model = timm.create_model(self.model_name, pretrained=download, img_size=self.image_size)
        except TypeError as exc:
            raise ConfigError(
                f"model_name={self.model_name!r} does not take an image size ({exc}); "
                f"use a timm ViT such as {EXAMPLE_MODEL}"
            ) from exc
        except Exception as exc:
            if not download:
                raise
            raise CheckpointError(
                f"weights_path=None: cannot download the pretrained weights of {self.model_name} "
                f"({type(exc).__name__}: {exc}); give weights_path=/path/to/dino_vits8.pth (a state dict for "
                f"{self.model_name}) "
                "or make the Hugging Face hub reachable so timm can download it"
            ) from exc
        self._check_architecture(model)
        if self.weights_path is not None:
            self._load_weights(model, self.weights_path)
        elif not pretrained:
            log.warning("attention mask uses a randomly initialised %s: its masks are meaningless", self.model_name)
        return model

    def _check_architecture(self, model: nn.Module) -> None:
        """Check that the model has what the attention hook needs.

        Args:
            model: Freshly created timm model.

        Raises:
            ConfigError: If the model has no ViT blocks with fused ``qkv`` attention or ``image_size`` does not fit
                its patch size.
        """
        blocks = getattr(model, "blocks", None)
        attention = getattr(blocks[-1], "attn", None) if isinstance(blocks, nn.Sequential) and len(blocks) else None
        has_all = attention is not None and all(hasattr(attention, name) for name in _ATTENTION_ATTRIBUTES)
        if not has_all or not hasattr(model, "patch_embed") or not hasattr(model, "num_prefix_tokens"):
            raise ConfigError(
                f"model_name={self.model_name!r} is not a ViT whose last block has a fused qkv attention; "
                f"set it to a timm ViT such as {EXAMPLE_MODEL}"
            )
        patch = model.patch_embed.patch_size[0]
        if self.image_size % patch:
            raise ConfigError(
                f"image_size={self.image_size} is not a multiple of the patch size {patch} of "
                f"{self.model_name}; use a multiple of {patch} (e.g. 224)"
            )

    def _load_weights(self, model: nn.Module, path: Path) -> None:
        """Load a state dict file into the model.

        Args:
            model: The ViT.
            path: PyTorch (``torch.save``) or ``.safetensors`` state dict.

        Raises:
            CheckpointError: If the file is unreadable or does not match the architecture.
        """
        fix = self._weights_fix()
        try:
            if path.suffix == ".safetensors":
                state = load_safetensors(path)
            else:
                state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise CheckpointError(f"weights_path={path} cannot be read ({exc}); {fix}") from exc
        state = _unwrap_state_dict(state, path, fix)
        pos_embed = state.get("pos_embed")
        resample = isinstance(pos_embed, Tensor) and pos_embed.ndim == 3 and pos_embed.shape != model.pos_embed.shape
        if resample and pos_embed.shape[-1] == model.pos_embed.shape[-1]:
            log.info("resampling pos_embed of %s from %s to %s", path, tuple(pos_embed.shape), model.pos_embed.shape)
            state["pos_embed"] = resample_abs_pos_embed(
                pos_embed, new_size=list(model.patch_embed.grid_size), num_prefix_tokens=model.num_prefix_tokens
            )
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            expected = model.state_dict()
            missing = sorted(set(expected) - set(state))
            unexpected = sorted(set(state) - set(expected))
            mismatched = sorted(
                name for name in set(expected) & set(state) if tuple(expected[name].shape) != tuple(state[name].shape)
            )
            raise CheckpointError(
                f"weights_path={path} does not fit {self.model_name} at image_size {self.image_size}: "
                f"missing keys {_preview(missing)}, unexpected keys {_preview(unexpected)}, "
                f"shape mismatches {_preview(mismatched)}; {fix}"
            ) from exc
        log.info("loaded attention-mask weights for %s from %s", self.model_name, path)

    def _weights_fix(self) -> str:
        """Return the advice appended to weights errors.

        Returns:
            How to point the config at usable weights.
        """
        return f"point weights_path at a state dict of {self.model_name}, or leave it empty to download one"

    def train(self, mode: bool = True) -> AttentionMask:
        """Set the training flag of this module while keeping the frozen ViT in eval mode.

        Args:
            mode: Training flag.

        Returns:
            ``self``.
        """
        super().train(mode)
        self.model.eval()
        return self

    @torch.no_grad()
    def attention_map(self, images: Tensor) -> Tensor:
        """Compute the last block's CLS-to-patch attention, averaged over heads.

        Args:
            images: Images ``(B, 3, H, W)`` in ``[0, 1]``.

        Returns:
            Attention ``(B, grid_h, grid_w)``, float32, summing to one per image.
        """
        check_images(images)
        inputs = F.interpolate(
            images.float(),
            size=(self.image_size, self.image_size),
            mode="bilinear",
            align_corners=False,
            antialias=True,
        )
        inputs = (inputs - self.mean) / self.std
        captured: list[Tensor] = []

        def hook(module: nn.Module, args: tuple[Any, ...], output: Tensor) -> None:
            captured.append(_cls_attention(module, args[0]))

        handle = self.model.blocks[-1].attn.register_forward_hook(hook)
        try:
            self.model.forward_features(inputs)
        finally:
            handle.remove()
        patches = captured[0][:, self.model.num_prefix_tokens :]
        patches = patches / patches.sum(dim=-1, keepdim=True)
        return patches.view(images.shape[0], *self.model.patch_embed.grid_size)

    def forward(self, images: Tensor) -> Tensor:
        """Mask the tokens holding the top ``theta`` of the attention mass.

        Args:
            images: Images ``(B, 3, H, W)`` in ``[0, 1]``.

        Returns:
            Masks ``(B, 1, H, W)``, float32 in ``{0, 1}``.
        """
        attention = self.attention_map(images)
        batch, grid_h, grid_w = attention.shape
        tokens = top_mass_tokens(attention.view(batch, grid_h * grid_w), self.theta)
        grid = tokens.view(batch, 1, grid_h, grid_w).to(torch.float32)
        return to_mask(F.interpolate(grid, size=images.shape[-2:], mode="nearest"))

    def settings(self) -> dict[str, Any]:
        """Return the settings that change the mask, the weights identified by a digest of their values.

        Returns:
            ``theta``, ``model_name``, ``image_size`` and ``weights`` (SHA-256 prefix).
        """
        return {
            "theta": self.theta,
            "model_name": self.model_name,
            "image_size": self.image_size,
            "weights": self.weights_digest,
        }


def _cls_attention(attention: nn.Module, tokens: Tensor) -> Tensor:
    """Recompute a timm attention layer's CLS attention row from its input, averaged over heads.

    Args:
        attention: timm ``Attention`` (fused ``qkv`` linear, ``num_heads``, ``scale``, q/k norms).
        tokens: Its input ``(B, N, C)``, the first token being CLS.

    Returns:
        Softmax attention of CLS over all ``N`` tokens ``(B, N)``, float32.
    """
    batch, length, _ = tokens.shape
    qkv = attention.qkv(tokens).reshape(batch, length, 3, attention.num_heads, -1).permute(2, 0, 3, 1, 4)
    query, key = attention.q_norm(qkv[0]), attention.k_norm(qkv[1])
    scores = (query[:, :, :1] * attention.scale) @ key.transpose(-2, -1)
    return scores.float().softmax(dim=-1).mean(dim=1)[:, 0]


def _unwrap_state_dict(state: Any, path: Path, fix: str) -> dict[str, Tensor]:
    """Extract a flat ``name -> tensor`` dict from a loaded weights file.

    Args:
        state: Loaded object.
        path: Its file, for messages.
        fix: Advice appended to errors.

    Returns:
        State dict with ``module.`` / ``backbone.`` prefixes removed.

    Raises:
        CheckpointError: If no state dict can be found.
    """
    for wrapper in _STATE_DICT_WRAPPERS:
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
            break
    if not isinstance(state, dict) or not state or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(f"weights_path={path} does not hold a state dict (name -> tensor); {fix}")
    unwrapped = {}
    for name, value in state.items():
        for prefix in _KEY_PREFIXES:
            name = name.removeprefix(prefix)
        unwrapped[name] = value
    return unwrapped


def _state_digest(model: nn.Module) -> str:
    """Fingerprint the model weights, so cached masks of other weights are not reused.

    Args:
        model: Model on the CPU.

    Returns:
        First 16 hex digits of the SHA-256 of every state tensor (names, shapes and values).
    """
    digest = hashlib.sha256()
    for name, value in model.state_dict().items():
        digest.update(f"{name}:{tuple(value.shape)}:{value.dtype}".encode())
        digest.update(value.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def _preview(names: list[str], limit: int = 5) -> str:
    """Format a possibly long list of key names.

    Args:
        names: Key names.
        limit: How many to show.

    Returns:
        ``"[a, b, ...] (+n more)"`` or ``"none"``.
    """
    if not names:
        return "none"
    shown = ", ".join(names[:limit])
    more = f" (+{len(names) - limit} more)" if len(names) > limit else ""
    return f"[{shown}]{more}"
