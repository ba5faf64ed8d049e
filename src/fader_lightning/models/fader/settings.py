"""Stage 2's settings, grouped by what they decide: the network, how it is trained, and the input it trains on.

``conf/fader/default.yaml`` keeps one flat ``fader`` node (``fader.patch_size=4``, ``fader.target=mse``: the keys a
sweep varies); :meth:`~fader_lightning.models.fader.module.FADeRModule.from_config` sorts its keys into these groups,
and a FADeR checkpoint stores each group as one hyper-parameter.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, TypeVar

from torch import nn

from fader_lightning.errors import ConfigError, settings_of
from fader_lightning.models.fader.model import FADeRModel
from fader_lightning.models.fader.targets import check_synthetic, fader_targets

G = TypeVar("G", bound="Settings")


class Settings:
    """What the groups share: built from a mapping (a config node, a checkpoint) and stored as plain values."""

    @classmethod
    def of(cls: type[G], values: G | Mapping[str, Any]) -> G:
        """The group from a mapping of exactly its keys (or the group itself).

        Raises:
            ConfigError: Naming a missing or unknown key as ``fader.<key>``.
        """
        if isinstance(values, cls):
            return values
        names = [spec.name for spec in fields(cls)]  # type: ignore[arg-type]
        required = [spec.name for spec in fields(cls) if spec.default is MISSING and spec.default_factory is MISSING]  # type: ignore[arg-type]
        unknown = sorted(set(values) - set(names))
        missing = [name for name in required if name not in values]
        if unknown or missing:
            problem = f"fader.{unknown[0]} is not a setting of stage 2" if unknown else f"fader.{missing[0]} is missing"
            raise ConfigError(
                f"{problem}; its {cls.__name__} settings are {', '.join(names)} (conf/fader/default.yaml)"
            )
        return cls(**{name: values[name] for name in names if name in values})

    def as_dict(self) -> dict[str, Any]:
        """The settings as plain values (what a checkpoint stores)."""
        return asdict(self)  # type: ignore[call-overload]


@dataclass(frozen=True)
class Network(Settings):
    """The FADeR network (:class:`~fader_lightning.models.fader.model.FADeRModel`): patch MLP, soft mask, attenuation.

    Attributes:
        patch_size: Patch side P in pixels.
        source: MLP input: ``skip_features`` or ``pixels``.
        hidden: Hidden width of the MLP.
        activation: ``leaky_relu``, ``relu`` or ``gelu``.
        levels: Skip levels to attenuate (0 = highest resolution).
        mapping: ``calibrated`` soft mask, or ``literal`` (τ = 0, T = 1).
        enabled: ``False`` makes the model identical to stage 1 (ablation).
        use: ``attenuate``, ``residual`` or ``both``.
        attenuate_masked: Whether patches hidden by the mask may be attenuated.
        residual_region: ``all`` or ``masked``.
    """

    patch_size: int
    source: str
    hidden: int
    activation: str
    levels: tuple[int, ...]
    mapping: str
    enabled: bool
    use: str
    attenuate_masked: bool
    residual_region: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "levels", tuple(int(level) for level in self.levels))

    def build(self, skip_channels: list[int]) -> nn.Module:
        """The network for a U-Net with these skip channels.

        Raises:
            ConfigError: On a setting the network refuses, named as ``fader.<key>``.
        """
        with settings_of("fader"):
            return FADeRModel(
                skip_channels, self.patch_size, self.source, self.hidden, self.activation, self.levels, self.mapping,
                self.enabled, use=self.use, attenuate_masked=self.attenuate_masked,
                residual_region=self.residual_region,
            )  # fmt: skip


@dataclass(frozen=True)
class Ranking(Settings):
    """How the network is trained: the ranking target and loss, and what the training rows are.

    Attributes:
        target: What the MLP ranks: a name of :func:`~fader_lightning.models.fader.targets.fader_targets`.
        margin: Ranking-loss margin ξ.
        synthetic: Settings of the ``synthetic`` target (``copies``, ``kinds``, ``min_side``, ``max_side``,
            ``tie_below``).
        seed: Seed of the random pairing of patches and of the synthetic defects.
        max_cached_images: Bound of the feature/target cache (augmented data never repeats).
    """

    target: str
    margin: float
    synthetic: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0
    max_cached_images: int = 20000

    def __post_init__(self) -> None:
        object.__setattr__(self, "synthetic", dict(self.synthetic))
        if self.target not in fader_targets():
            raise ConfigError(f"fader.target={self.target!r} is unknown; use one of {', '.join(fader_targets())}")
        if self.margin < 0:
            raise ConfigError(f"fader.margin={self.margin} must be >= 0")
        if self.target == "synthetic":
            with settings_of("fader.synthetic"):
                check_synthetic(self.synthetic["kinds"], self.synthetic["min_side"], self.synthetic["max_side"])


@dataclass(frozen=True)
class Inputs(Settings):
    """The input stage 2 trains on (``data.image_size``, ``data.interpolation``), saved in its checkpoint.

    Attributes:
        image_size: ``[height, width]``, or ``None`` (its stage-1 model's).
        interpolation: Resize method, or ``None`` (its stage-1 model's).
        force_image_size: Train at ``image_size`` even when the stage-1 model was trained at another size
            (``force=true`` of a ``stage=fader`` job).
    """

    image_size: list[int] | None = None
    interpolation: str | None = None
    force_image_size: bool = False


GROUPS: dict[str, type[Settings]] = {"network": Network, "ranking": Ranking, "inputs": Inputs}
"""The groups by the name ``FADeRModule`` takes them (and a checkpoint stores them) under."""


def grouped(flat: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Sort the flat keys of the ``fader`` config node (or of an older checkpoint) into :data:`GROUPS`.

    Args:
        flat: ``{key: value}`` holding each group's keys.

    Returns:
        ``{group: {key: value}}`` for the groups whose keys are there.
    """
    out: dict[str, dict[str, Any]] = {}
    for name, cls in GROUPS.items():
        keys = [spec.name for spec in fields(cls)]  # type: ignore[arg-type]
        out[name] = {key: flat[key] for key in keys if key in flat}
    return out
