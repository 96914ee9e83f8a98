"""Recipes: TOML into frozen dataclasses, unknown keys, typed --set overrides, round trip."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from srtool.errors import UsageError
from srtool.train.config import Recipe, load_recipe, parse_recipe, recipe_to_toml

RECIPES = Path(__file__).resolve().parents[1] / "training" / "recipes"


def test_defaults_are_documented_values() -> None:
    r = load_recipe(None)
    assert r.optim.lr == 1e-4 and r.optim.betas == (0.9, 0.999)
    assert r.data.patch_size == 128 and r.train.ema_decay == 0.999
    assert r.loss.gp_weight == 10.0 and r.loss.msssim_alpha == 0.84
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.optim.lr = 1.0  # type: ignore[misc]


def test_file_and_overrides(tmp_path: Path) -> None:
    f = tmp_path / "r.toml"
    f.write_text(
        'name = "t"\n[model]\narch = "rrdbnet"\nhparams = {blocks = 2}\n'
        '[optim]\nschedule = "step"\nmilestones = [10, 20]\n'
    )
    r = load_recipe(
        f,
        [
            "optim.lr=2e-4",
            "model.hparams.features=8",
            "data.patch_size=192",
            "train.channels_last=off",
            "loss.perceptual_layers={relu2_2 = 0.5}",
            "discriminator.arch=unet_sn",
        ],
    )
    assert r.model.hparams == {"blocks": 2, "features": 8}
    assert r.optim.lr == 2e-4 and r.optim.milestones == (10, 20)
    assert r.data.patch_size == 192 and r.train.channels_last == "off"
    assert r.loss.perceptual_layers == {"relu2_2": 0.5}
    assert r.discriminator.arch == "unet_sn"  # a bare word is taken as a string


def test_on_off_switches_accept_booleans() -> None:
    assert load_recipe(None, ["train.channels_last=true"]).train.channels_last == "on"
    assert load_recipe(None, ["train.channels_last=false"]).train.channels_last == "off"
    assert load_recipe(None, []).train.channels_last == "auto"


def test_int_given_for_float_is_accepted_but_not_the_reverse() -> None:
    assert load_recipe(None, ["optim.lr=1"]).optim.lr == 1.0
    with pytest.raises(UsageError, match="train.steps: expected int"):
        load_recipe(None, ["train.steps=1.5"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lrr=1", r"unknown key optim.lrr; valid keys of optim: lr, lr_d, betas"),
        ("optimizer.lr=1", "expected section.key=value .*sections: model, discriminator"),
        ("optim=1", "expected section.key=value"),
        ("loss.pixel=l3", "'l3' is not one of 'l1', 'mse', 'charbonnier', 'msssim_l1'"),
        ("optim.betas=[0.9]", "expected 2 values"),
        ("data.flip=1", "expected bool"),
        ("noequals", "expects section.key=value"),
        ("data.patch_size=", "data.patch_size: expected int"),
        ("data.patch_size=130", "multiple of model.scale"),
        ("loss.adversarial=ragan", "adversarial_weight is 0"),
    ],
)
def test_errors_name_the_problem(override: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        load_recipe(None, [override])


def test_unknown_top_level_key_in_file(tmp_path: Path) -> None:
    f = tmp_path / "r.toml"
    f.write_text("[trian]\nsteps = 3\n")
    with pytest.raises(UsageError, match=r"r.toml: unknown recipe key trian; valid: .*train"):
        load_recipe(f)
    f.write_text("[train\n")
    with pytest.raises(UsageError, match="not valid TOML"):
        load_recipe(f)


def test_toml_round_trip() -> None:
    r = load_recipe(
        None,
        [
            "model.hparams={features = 8, convs = 2}",
            "optim.milestones=[3]",
            'description="a \\"quoted\\" text"',
            "optim.min_lr=1e-9",
        ],
    )
    import tomllib

    again = parse_recipe(tomllib.loads(recipe_to_toml(r)))
    assert again == r


@pytest.mark.parametrize("name", sorted(p.stem for p in RECIPES.glob("*.toml")))
def test_shipped_recipes_load(name: str) -> None:
    r = load_recipe(RECIPES / f"{name}.toml")
    assert isinstance(r, Recipe) and r.name == name and r.description
    assert r.optim.lr > 0 and r.train.steps > 0


def test_all_shipped_recipes_present() -> None:
    names = {p.stem for p in RECIPES.glob("*.toml")}
    assert {
        "srgan_x4",
        "esrgan_x4_psnr",
        "esrgan_x4_gan",
        "compact_x2",
        "compact_x3",
        "compact_x4",
    } <= names
