"""Memory + disk cache of the masks of deterministic generators (attention masks cost a ViT forward per image)."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fader_lightning.errors import ConfigError
from fader_lightning.masking.base import MaskGenerator, check_images

log = logging.getLogger(__name__)

_SHIFTS = torch.arange(7, -1, -1, dtype=torch.uint8)


def pack_bits(mask: Tensor) -> Tensor:
    """Pack a binary tensor into bytes, 8 values per byte (most significant bit first).

    Args:
        mask: Tensor of 0/1 (or bool) values, any shape.

    Returns:
        1-D uint8 tensor of ``ceil(numel / 8)`` bytes on the same device.
    """
    flat = mask.flatten().to(torch.uint8)
    flat = F.pad(flat, (0, (-flat.numel()) % 8)).view(-1, 8)
    return (flat << _SHIFTS.to(flat.device)).sum(dim=1).to(torch.uint8)


def unpack_bits(packed: Tensor, shape: tuple[int, ...]) -> Tensor:
    """Invert :func:`pack_bits`.

    Args:
        packed: 1-D uint8 tensor from :func:`pack_bits`.
        shape: Shape of the packed tensor.

    Returns:
        Boolean tensor of ``shape``.
    """
    bits = (packed[:, None] >> _SHIFTS.to(packed.device)) & 1
    numel = 1
    for size in shape:
        numel *= size
    return bits.flatten()[:numel].view(shape).bool()


class MaskCache(nn.Module):
    """Wrap a mask generator and reuse the masks of images seen before.

    For a deterministic generator every image gets a key, the SHA-256 of its pixels rounded to float16 (robust to
    float noise below that precision), its shape and ``generator.config_key()``. Masks are looked up in an in-memory
    LRU dict first, then in ``cache_dir/<key[:2]>/<key>.pt`` (bit-packed, written atomically), and only the misses
    are computed, in one batch. Non-deterministic generators are called directly and nothing is cached.

    Attributes:
        generator: The wrapped generator.
        cache_dir: Folder of the disk cache, ``None`` for memory only.
        max_memory_items: Capacity of the memory LRU (``0`` disables it).
        hits: Images served from memory or disk.
        misses: Images whose masks had to be computed.

    Args:
        generator: Generator to wrap.
        cache_dir: Disk cache folder (created on first write), ``None`` to keep masks in memory
            only.
        max_memory_items: Number of images whose masks stay in memory (about ``P * H * W / 8`` bytes each).

    Raises:
        ConfigError: If ``max_memory_items`` is negative.
    """

    def __init__(
        self, generator: MaskGenerator, cache_dir: str | Path | None = None, max_memory_items: int = 4096
    ) -> None:
        super().__init__()
        if isinstance(max_memory_items, bool) or not isinstance(max_memory_items, int) or max_memory_items < 0:
            raise ConfigError(
                f"max_memory_items of the mask cache must be an integer >= 0, got {max_memory_items!r}; "
                "use 0 to disable the memory cache"
            )
        self.generator = generator
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self.max_memory_items = max_memory_items
        self.hits = 0
        self.misses = 0
        self._memory: OrderedDict[str, Tensor] = OrderedDict()

    @property
    def deterministic(self) -> bool:
        """bool: Whether the wrapped generator is deterministic (and masks are cached)."""
        return self.generator.deterministic

    @property
    def partitions(self) -> bool:
        """bool: ``partitions`` of the wrapped generator."""
        return self.generator.partitions

    @property
    def num_passes(self) -> int:
        """int: ``num_passes`` of the wrapped generator."""
        return self.generator.num_passes

    @property
    def group_size(self) -> int:
        """int: ``group_size`` of the wrapped generator."""
        return self.generator.group_size

    def training_masks(self, images: Tensor) -> Tensor:
        """The cached masks: deterministic methods train on the masks they test with."""
        return self(images)

    def keys(self, images: Tensor) -> list[str]:
        """Compute the cache key of every image of a batch.

        Args:
            images: Images ``(B, 3, H, W)``.

        Returns:
            Hex SHA-256 keys, one per image.
        """
        check_images(images)
        pixels = images.detach().to(dtype=torch.float16).cpu().contiguous()
        prefix = f"{self.generator.config_key()}|{tuple(images.shape[1:])}|".encode()
        return [hashlib.sha256(prefix + image.numpy().tobytes()).hexdigest() for image in pixels]

    def path_for(self, key: str) -> Path:
        """Return the disk file of a key.

        Args:
            key: Key from :meth:`keys`.

        Returns:
            ``cache_dir/<key[:2]>/<key>.pt``.

        Raises:
            ConfigError: If the cache has no ``cache_dir``.
        """
        if self.cache_dir is None:
            raise ConfigError("this mask cache has no cache_dir; pass cache_dir to MaskCache to use the disk cache")
        return self.cache_dir / key[:2] / f"{key}.pt"

    def forward(self, images: Tensor) -> Tensor:
        """Return the masks of a batch, computing only those not cached.

        Args:
            images: Images ``(B, 3, H, W)``.

        Returns:
            Masks ``(B, P, H, W)``, float32 in ``{0, 1}``, on the images' device.
        """
        if not self.generator.deterministic:
            return self.generator(images)
        batch, _, height, width = images.shape
        shape = (self.generator.num_passes, height, width)
        masks = torch.empty(batch, *shape, dtype=torch.float32, device=images.device)
        keys = self.keys(images)
        missing = []
        for index, key in enumerate(keys):
            packed = self._lookup(key, shape)
            if packed is None:
                missing.append(index)
            else:
                masks[index] = unpack_bits(packed, shape).to(device=images.device, dtype=torch.float32)
        self.hits += batch - len(missing)
        self.misses += len(missing)
        if missing:
            computed = self.generator(images[missing])
            masks[missing] = computed.to(torch.float32)
            for row, index in enumerate(missing):
                self._store(keys[index], pack_bits(computed[row] > 0.5).cpu(), shape)
        return masks

    def _lookup(self, key: str, shape: tuple[int, int, int]) -> Tensor | None:
        """Find the packed mask of a key in memory, then on disk.

        Args:
            key: Image key.
            shape: Expected ``(P, H, W)``.

        Returns:
            Packed mask, or ``None`` on a miss (or an unreadable / mismatched disk entry).
        """
        packed = self._memory.get(key)
        if packed is not None:
            self._memory.move_to_end(key)
            return packed
        if self.cache_dir is None:
            return None
        path = self.path_for(key)
        if not path.is_file():
            return None
        try:
            entry = torch.load(path, map_location="cpu", weights_only=True)
            packed = entry["bits"]
            stored_shape = tuple(entry["shape"])
        except Exception as exc:  # any unreadable entry (truncated, foreign format) is recomputed and overwritten
            log.warning("ignoring unreadable mask cache file %s (%s); recomputing it", path, exc)
            return None
        expected_bytes = -(-(shape[0] * shape[1] * shape[2]) // 8)
        if stored_shape != shape or packed.dtype != torch.uint8 or packed.numel() != expected_bytes:
            log.warning(
                "ignoring mask cache file %s of shape %s (expected %s); recomputing it", path, stored_shape, shape
            )
            return None
        self._remember(key, packed)
        return packed

    def _store(self, key: str, packed: Tensor, shape: tuple[int, int, int]) -> None:
        """Keep a packed mask in memory and write it to disk.

        Args:
            key: Image key.
            packed: Packed mask on the CPU.
            shape: ``(P, H, W)`` of the mask.

        Raises:
            ConfigError: If the disk cache folder cannot be written.
        """
        self._remember(key, packed)
        if self.cache_dir is None:
            return
        path = self.path_for(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{key}.", suffix=".tmp")
            os.close(handle)
            try:
                torch.save({"shape": list(shape), "bits": packed}, temp_name)
                os.replace(temp_name, path)
            finally:
                if os.path.exists(temp_name):
                    os.remove(temp_name)
        except OSError as exc:
            raise ConfigError(
                f"cannot write the mask cache file {path} ({exc}); point the mask cache_dir to a writable folder "
                "or set it to null to keep masks in memory only"
            ) from exc

    def _remember(self, key: str, packed: Tensor) -> None:
        """Insert into the memory LRU, evicting the oldest entries beyond ``max_memory_items``.

        Args:
            key: Image key.
            packed: Packed mask.
        """
        if self.max_memory_items == 0:
            return
        self._memory[key] = packed
        self._memory.move_to_end(key)
        while len(self._memory) > self.max_memory_items:
            self._memory.popitem(last=False)

    def extra_repr(self) -> str:
        """Return the settings shown by ``repr``.

        Returns:
            Comma-separated ``name=value`` pairs.
        """
        return f"cache_dir={self.cache_dir}, max_memory_items={self.max_memory_items}"
