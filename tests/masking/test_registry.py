import pytest

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
    masking_methods,
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


def _entry_points(monkeypatch: pytest.MonkeyPatch, group: str, **targets: str) -> None:
    """Installed packages that declare ``targets`` (``name="module:attr"``) under an entry-point group."""
    from importlib.metadata import EntryPoint

    import fader_lightning.utils.plugins as plugins

    points = [EntryPoint(name, value, group) for name, value in targets.items()]
    monkeypatch.setattr(plugins, "entry_points", lambda group: [p for p in points if p.group == group])
    masking_methods.cache_clear()


class StripeMask(NoMask):
    """A package's masking method (a NoMask under another name)."""

    name = "stripes"


class Misnamed(NoMask):
    name = "other"


def test_installed_packages_add_methods_and_clashes_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    _entry_points(monkeypatch, "fader_lightning.masking", stripes=f"{__name__}:StripeMask")
    try:
        assert available_methods() == ["attention", "checkerboard", "none", "random_multi", "saliency", "stripes"]
        assert type(build_mask_generator("stripes")) is StripeMask and "stripes" not in MASKING_METHODS
        for targets, message in (
            ({"none": f"{__name__}:StripeMask"}, r"declares the masking method 'none' .* a name that is taken"),
            ({"x": f"{__name__}:Misnamed"}, r"the masking method 'x' states name='other'; make the two equal"),
            ({"y": f"{__name__}:test_build_passes_settings"}, r"'y' .* is <function .*, not a MaskGenerator subclass"),
            ({"z": "no_such_package.masks:Z"}, r"the masking method 'z' of .* cannot be imported: ModuleNotFoundError"),
        ):
            _entry_points(monkeypatch, "fader_lightning.masking", **targets)
            with pytest.raises(ConfigError, match=message):
                available_methods()
    finally:
        masking_methods.cache_clear()
