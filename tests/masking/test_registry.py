import pytest
import torch

from fader_lightning.errors import ConfigError
from fader_lightning.masking import (
    MASKING_METHODS,
    CheckerboardMask,
    MaskGenerator,
    NoMask,
    RandomMultiMask,
    SpectralResidualSaliencyMask,
    available_methods,
    build_mask_generator,
    register,
)


def test_available_methods_lists_every_method_sorted():
    assert available_methods() == ["attention", "checkerboard", "none", "random_multi", "saliency"]
    assert set(MASKING_METHODS) == set(available_methods())


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("none", NoMask),
        ("checkerboard", CheckerboardMask),
        ("random_multi", RandomMultiMask),
        ("saliency", SpectralResidualSaliencyMask),
    ],
)
def test_build_returns_the_registered_class_with_its_name(name, cls):
    generator = build_mask_generator(name)
    assert type(generator) is cls
    assert generator.name == name
    assert isinstance(generator, MaskGenerator)


def test_build_passes_settings():
    generator = build_mask_generator("checkerboard", cell_size=4, phase=1)
    assert (generator.cell_size, generator.phase) == (4, 1)


def test_unknown_name_lists_known_methods():
    with pytest.raises(ConfigError, match=r"^name='x' is not a masking method; known: attention, checkerboard, none"):
        build_mask_generator("x")


def test_unknown_setting_is_a_config_error_naming_it():
    with pytest.raises(ConfigError, match=r"^cell_sizze"):
        build_mask_generator("checkerboard", cell_sizze=4)


def test_duplicate_registration_is_refused():
    with pytest.raises(ValueError, match=r"already registered"):

        @register("none")
        class Other(NoMask):
            pass

    assert MASKING_METHODS["none"] is NoMask


def test_config_key_changes_with_settings_and_is_stable():
    assert CheckerboardMask(8).config_key() == CheckerboardMask(8).config_key()
    assert CheckerboardMask(8).config_key() != CheckerboardMask(16).config_key()
    assert CheckerboardMask(8).config_key() != CheckerboardMask(8, phase=1).config_key()
    assert NoMask().config_key() != CheckerboardMask().config_key()


def test_generators_reject_bad_image_layout():
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        NoMask()(torch.zeros(2, 1, 8, 8))
