"""The architecture registry: shapes, gradients, hyper-parameter records, reference equivalence."""

from __future__ import annotations

import importlib
import inspect

import pytest

torch = pytest.importorskip("torch")

from srtool.errors import ModelError  # noqa: E402
from srtool.models import ARCHS, DISCRIMINATORS, build  # noqa: E402

# Tiny widths and depths: every test here runs in well under a second on 2 CPU cores.
TINY = {
    "srresnet": {"features": 8, "blocks": 2},
    "rrdbnet": {"features": 8, "blocks": 1, "growth": 4},
    "compact": {"features": 8, "convs": 2},
    "span": {"features": 8, "blocks": 2, "convs": 2},
    "vgg": {"features": 4},
    "unet_sn": {"features": 4},
}


def tiny(arch: str, **extra: object) -> torch.nn.Module:
    torch.manual_seed(0)
    return build(arch, **TINY[arch], **extra)


def test_every_registered_arch_has_tiny_settings() -> None:
    assert set(TINY) == set(ARCHS) | set(DISCRIMINATORS)
    assert not set(ARCHS) & set(DISCRIMINATORS)


@pytest.mark.parametrize("arch", sorted(ARCHS))
@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("size", [(13, 17), (8, 8), (1, 5)])
def test_generator_output_is_scale_times_input(
    arch: str, scale: int, size: tuple[int, int]
) -> None:
    model = tiny(arch, scale=scale).eval()
    assert model.scale == scale and model.multiple_of == 1 and model.kind == "generator"
    x = torch.rand(2, 3, *size)
    with torch.no_grad():
        y = model(x)
    assert y.shape == (2, 3, size[0] * scale, size[1] * scale)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("scale", [1, 2])
def test_rrdbnet_pixel_unshuffle_variant(scale: int) -> None:
    model = tiny("rrdbnet", scale=scale, unshuffle=True).eval()
    factor = 4 // scale
    assert model.multiple_of == factor
    assert model.conv_first.in_channels == 3 * factor * factor
    h, w = 3 * factor, 5 * factor
    with torch.no_grad():
        assert model(torch.rand(1, 3, h, w)).shape == (1, 3, h * scale, w * scale)
    with pytest.raises(ModelError, match="unshuffle"):
        build("rrdbnet", scale=4, unshuffle=True)


def test_compact_scale_1_is_a_same_size_network() -> None:
    model = tiny("compact", scale=1).eval()
    with torch.no_grad():
        assert model(torch.rand(1, 3, 7, 9)).shape == (1, 3, 7, 9)


@pytest.mark.parametrize("arch", sorted(ARCHS) + sorted(DISCRIMINATORS))
def test_gradients_reach_every_parameter(arch: str) -> None:
    model = tiny(arch, **({"scale": 2} if arch in ARCHS else {})).train()
    size = 16 if arch != "vgg" else 24
    out = model(torch.rand(2, 3, size, size))
    out.square().mean().backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, f"{arch}: no gradient reaches {name}"
        assert torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, f"{arch}: zero gradient at {name}"


@pytest.mark.parametrize("arch", sorted(ARCHS) + sorted(DISCRIMINATORS))
def test_hparams_rebuild_an_identical_network(arch: str) -> None:
    model = tiny(arch).eval()
    again = build(arch, **model.hparams).eval()
    assert again.hparams == model.hparams
    again.load_state_dict(model.state_dict(), strict=True)
    x = torch.rand(1, 3, 16, 16) if arch != "vgg" else torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), again(x))


@pytest.mark.parametrize("arch", sorted(ARCHS) + sorted(DISCRIMINATORS))
def test_constructors_are_keyword_only_with_defaults(arch: str) -> None:
    cls = ARCHS.get(arch) or DISCRIMINATORS[arch]
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    assert params, arch
    for p in params:
        assert p.kind is inspect.Parameter.KEYWORD_ONLY, f"{arch}.{p.name}"
        assert p.default is not inspect.Parameter.empty, f"{arch}.{p.name} has no default"
    # Every constructor argument is recorded, so the model describes itself fully.
    assert set(tiny(arch).hparams) == {p.name for p in params}


@pytest.mark.parametrize(
    "module", ["srresnet", "rrdbnet", "compact", "span", "reparam", "discriminators"], ids=str
)
def test_arch_modules_declare_all(module: str) -> None:
    mod = importlib.import_module(f"srtool.models.{module}")
    assert mod.__all__ and all(hasattr(mod, name) for name in mod.__all__)


def test_unknown_arch_lists_the_valid_ones() -> None:
    with pytest.raises(ModelError) as info:
        build("edsr")
    for name in list(ARCHS) + list(DISCRIMINATORS):
        assert name in str(info.value)


def test_unknown_and_invalid_hparams_are_named() -> None:
    with pytest.raises(ModelError, match="num_feat.*accepted: scale"):
        build("compact", num_feat=8)
    with pytest.raises(ModelError, match="scale must be"):
        build("compact", scale=5)
    with pytest.raises(ModelError, match="scale must be"):
        build("srresnet", scale=8)


def test_compact_is_srvggnetcompact() -> None:
    """Same structure and key names as Real-ESRGAN's model: weights move across unchanged."""
    from spandrel.architectures.Compact import Compact as Reference

    ours = tiny("compact", scale=3).eval()
    ref = Reference(num_feat=8, num_conv=2, upscale=3).eval()
    ref.load_state_dict(ours.state_dict(), strict=True)
    x = torch.rand(1, 3, 11, 7)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=1e-6)


def test_rrdbnet_uses_esrgan_scaled_init() -> None:
    torch.manual_seed(0)
    model = build("rrdbnet", features=32, blocks=1, growth=16)
    conv = model.body[0].rdb1.conv1
    kaiming_std = (2.0 / (conv.in_channels * 9)) ** 0.5
    assert conv.weight.std().item() == pytest.approx(0.1 * kaiming_std, rel=0.15)
    assert torch.count_nonzero(conv.bias) == 0


def test_srresnet_batch_norm_switch() -> None:
    with_bn = tiny("srresnet")
    without = tiny("srresnet", batch_norm=False)
    kinds = lambda m: {type(x).__name__ for x in m.modules()}  # noqa: E731
    assert "BatchNorm2d" in kinds(with_bn) and "BatchNorm2d" not in kinds(without)


def test_vgg_discriminator_is_srgan_at_96_and_accepts_other_sizes() -> None:
    model = tiny("vgg").eval()
    with torch.no_grad():
        feats = model.features(torch.rand(1, 3, 96, 96))
        assert feats.shape[-2:] == (6, 6)  # the adaptive pool is the identity: SRGAN exactly
        for size in (96, 128, 40):
            assert model(torch.rand(3, 3, size, size)).shape == (3, 1)


def test_unet_discriminator_is_per_pixel_and_spectrally_normalised() -> None:
    model = tiny("unet_sn").eval()
    assert model.multiple_of == 8
    with torch.no_grad():
        assert model(torch.rand(2, 3, 24, 40)).shape == (2, 1, 24, 40)
    normalised = [n for n, _ in model.named_modules() if n.endswith("parametrizations")]
    assert len(normalised) == 8  # conv1..conv8, not conv0 / conv9


@pytest.mark.parametrize("extra", [{"scale": 4}, {"scale": 2, "unshuffle": True}], ids=str)
def test_rrdbnet_weights_load_in_spandrel_as_esrgan(extra: dict) -> None:
    """BasicSR key names: srtool's RRDBNet weights are ordinary ESRGAN weights to other tools."""
    import spandrel

    torch.manual_seed(0)
    ours = build("rrdbnet", features=8, blocks=1, growth=32, **extra).eval()
    state = spandrel.canonicalize_state_dict(ours.state_dict())
    theirs = spandrel.ModelLoader(device="cpu").load_from_state_dict(state)
    assert theirs.architecture.id == "ESRGAN" and theirs.scale == extra["scale"]
    x = torch.rand(1, 3, 12, 16)
    with torch.no_grad():
        torch.testing.assert_close(theirs.model.eval()(x), ours(x), rtol=0, atol=1e-6)


def test_measured_macs_match_the_compact_formula() -> None:
    from srtool.models.profile import count_parameters, measure_cost

    model = build("compact", scale=4, features=16, convs=3).eval()
    cost = measure_cost(model, size=(10, 14))
    expected = (9 * 3 * 16 + 3 * 9 * 16 * 16 + 9 * 16 * 48) / 16
    assert cost.macs_per_output_pixel == pytest.approx(expected)
    assert cost.params == count_parameters(model) == sum(p.numel() for p in model.parameters())
    assert cost.peak_activation_per_input_pixel == 48  # the 3*s*s conv output
