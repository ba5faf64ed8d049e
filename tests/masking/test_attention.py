from pathlib import Path

import pytest
import timm
import torch
from omegaconf import OmegaConf
from safetensors.torch import save_file
from timm.layers import resample_abs_pos_embed
from torch import nn

from fader_lightning.configs import CONFIG_DIR
from fader_lightning.errors import CheckpointError, ConfigError
from fader_lightning.masking import AttentionMask, build_mask_generator
from fader_lightning.masking.attention import top_mass_tokens

TINY = "vit_tiny_patch16_224"


@pytest.fixture(scope="module")
def tiny_state():
    torch.manual_seed(0)
    return timm.create_model(TINY, pretrained=False, img_size=128).state_dict()


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory, tiny_state):
    path = tmp_path_factory.mktemp("weights") / "tiny.pth"
    torch.save(tiny_state, path)
    return path


@pytest.fixture(scope="module")
def tiny_mask(tiny_weights):
    return AttentionMask(theta=0.6, model_name=TINY, image_size=128, weights_path=tiny_weights)


def _images(batch=2, height=96, width=80, seed=0):
    return torch.rand(batch, 3, height, width, generator=torch.Generator().manual_seed(seed))


def _assert_top_mass(attention, kept, theta):
    """Kept mass >= theta, dropping the smallest kept token goes below theta, and kept tokens are the largest."""
    probs = attention.double() / attention.double().sum(dim=-1, keepdim=True)
    for row, keep in zip(probs, kept, strict=True):
        mass = row[keep].sum().item()
        assert mass >= theta - 1e-9
        assert mass - row[keep].min().item() < theta
        if (~keep).any():
            assert row[keep].min() >= row[~keep].max()


@pytest.mark.parametrize("theta", [0.1, 0.6, 0.95, 1.0])
def test_top_mass_tokens_keeps_the_fewest_largest_tokens(theta):
    attention = torch.rand(5, 50, generator=torch.Generator().manual_seed(1)) ** 3
    kept = top_mass_tokens(attention, theta)
    assert kept.dtype == torch.bool and kept.shape == (5, 50)
    _assert_top_mass(attention, kept, theta)


def test_top_mass_tokens_on_a_peaked_map():
    attention = torch.tensor([[0.7, 0.1, 0.1, 0.05, 0.05]])
    assert top_mass_tokens(attention, 0.6).tolist() == [[True, False, False, False, False]]
    assert top_mass_tokens(attention, 0.75).tolist() == [[True, True, False, False, False]]


def test_mask_shape_and_mass_consistent_with_theta(tiny_mask):
    images = _images()
    masks = tiny_mask(images)
    assert masks.shape == (2, 1, 96, 80) and masks.dtype == torch.float32
    assert torch.all((masks == 0) | (masks == 1))
    attention = tiny_mask.attention_map(images)
    assert attention.shape == (2, 8, 8)
    assert torch.allclose(attention.sum(dim=(1, 2)), torch.ones(2))
    kept = top_mass_tokens(attention.view(2, 64), 0.6)
    _assert_top_mass(attention.view(2, 64), kept, 0.6)
    expected = nn.functional.interpolate(kept.view(2, 1, 8, 8).float(), size=(96, 80), mode="nearest")
    assert torch.equal(masks, expected)
    assert 0 < masks.mean() < 1


def test_hook_attention_equals_timm_attention_weights(tiny_mask):
    images = _images(1, 128, 128)
    attn = tiny_mask.model.blocks[-1].attn
    recorded = []

    class Recorder(nn.Module):
        def forward(self, weights):
            recorded.append(weights)
            return weights

    original_drop, original_fused = attn.attn_drop, attn.fused_attn
    attn.attn_drop, attn.fused_attn = Recorder(), False
    try:
        attention = tiny_mask.attention_map(images)
    finally:
        attn.attn_drop, attn.fused_attn = original_drop, original_fused
    reference = recorded[0][:, :, 0, 1:].mean(dim=1)
    reference = reference / reference.sum(dim=-1, keepdim=True)
    assert torch.allclose(attention.view(1, -1), reference, atol=1e-6)


def test_model_is_frozen_and_stays_in_eval(tiny_mask):
    assert not any(param.requires_grad for param in tiny_mask.parameters())
    tiny_mask.train()
    assert tiny_mask.training and not tiny_mask.model.training
    images = _images(1)
    assert torch.equal(tiny_mask(images), tiny_mask(images))
    assert tiny_mask.deterministic and tiny_mask.num_passes == 1


def test_built_by_name_with_weights_digest_in_config_key(tiny_weights, tiny_mask):
    generator = build_mask_generator("attention", model_name=TINY, image_size=128, weights_path=str(tiny_weights))
    assert isinstance(generator, AttentionMask)
    assert generator.config_key() == tiny_mask.config_key()
    assert AttentionMask(theta=0.5, model_name=TINY, image_size=128, weights_path=tiny_weights).config_key() != (
        generator.config_key()
    )
    other = AttentionMask(model_name=TINY, image_size=128, pretrained=False)
    assert other.config_key() != generator.config_key()


def test_default_dino_architecture_with_random_weights(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "dino_vits8.pth"
    configured = OmegaConf.load(Path(CONFIG_DIR) / "masking" / "attention.yaml").model_name  # the DINO ViT-S/8
    torch.save(timm.create_model(configured, pretrained=False).state_dict(), path)
    generator = AttentionMask(model_name=configured, weights_path=path)
    images = _images(1, 224, 224)
    masks = generator(images)
    assert masks.shape == (1, 1, 224, 224)
    attention = generator.attention_map(images)
    assert attention.shape == (1, 28, 28)
    tokens = masks[0, 0, ::8, ::8].bool().view(1, -1)
    _assert_top_mass(attention.view(1, -1), tokens, 0.6)


def test_wrapped_prefixed_state_dict_with_other_size_loads(tmp_path, tiny_state):
    path = tmp_path / "wrapped.pth"
    torch.save({"state_dict": {f"module.{name}": value for name, value in tiny_state.items()}}, path)
    generator = AttentionMask(model_name=TINY, image_size=64, weights_path=path)
    loaded = generator.model.state_dict()
    assert torch.equal(loaded["blocks.11.attn.qkv.weight"], tiny_state["blocks.11.attn.qkv.weight"])
    assert torch.allclose(loaded["pos_embed"], resample_abs_pos_embed(tiny_state["pos_embed"], new_size=[4, 4]))
    assert generator(_images(1, 64, 64)).shape == (1, 1, 64, 64)


def test_safetensors_weights_load(tmp_path, tiny_state):
    path = tmp_path / "tiny.safetensors"
    save_file({name: value.contiguous() for name, value in tiny_state.items()}, str(path))
    generator = AttentionMask(model_name=TINY, image_size=128, weights_path=path)
    assert torch.equal(generator.model.state_dict()["cls_token"], tiny_state["cls_token"])


def test_missing_weights_file_names_the_path(tmp_path):
    path = tmp_path / "nowhere" / "dino.pth"
    with pytest.raises(CheckpointError, match=rf"^weights_path={path} does not exist"):
        AttentionMask(model_name=TINY, weights_path=path)


def test_wrong_architecture_names_keys_and_path(tmp_path, tiny_state, tiny_weights):
    path = tmp_path / "wrong.pth"
    state = dict(tiny_state)
    state.pop("norm.weight")
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, path)
    with pytest.raises(
        CheckpointError, match=r"missing keys \[norm.weight\], unexpected keys \[extra.weight\]"
    ) as info:
        AttentionMask(model_name=TINY, image_size=128, weights_path=path)
    assert str(path) in str(info.value)
    with pytest.raises(CheckpointError, match=r"shape mismatches \[.*blocks.0.attn.qkv.weight") as info:
        AttentionMask(model_name="vit_small_patch16_224", image_size=64, weights_path=tiny_weights)
    assert "vit_small_patch16_224" in str(info.value)


def test_file_without_state_dict_is_refused(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([1, 2, 3], path)
    with pytest.raises(CheckpointError, match=r"does not hold a state dict"):
        AttentionMask(model_name=TINY, weights_path=path)
    path.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match=rf"^weights_path={path} cannot be read"):
        AttentionMask(model_name=TINY, weights_path=path)


def test_no_weights_and_no_hub_says_both_ways(monkeypatch):
    create_model = timm.create_model

    def offline(name, pretrained=False, **kwargs):
        if pretrained:
            raise OSError("We couldn't connect to 'https://huggingface.co'")
        return create_model(name, pretrained=False, **kwargs)

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(CheckpointError) as info:
        AttentionMask(model_name=TINY)
    message = str(info.value)
    assert "weights_path=" in message
    assert "Hugging Face hub" in message
    assert TINY in message


def test_bad_settings_are_config_errors():
    with pytest.raises(ConfigError, match=r"^model_name='nope'"):
        AttentionMask(model_name="nope")
    with pytest.raises(ConfigError, match=r"^model_name='resnet18'"):
        AttentionMask(model_name="resnet18", pretrained=False)
    with pytest.raises(ConfigError, match=r"^theta"):
        AttentionMask(theta=0.0, model_name=TINY, pretrained=False)
    with pytest.raises(ConfigError, match=r"^image_size=100"):
        AttentionMask(model_name=TINY, image_size=100, pretrained=False)
