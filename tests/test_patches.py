"""Training patches: name pairing, size checks, cached LR, patches, seeded sampling."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from srtool.errors import DataError
from srtool.train import degrade, patches
from srtool.train.config import DegradationConfig

BICUBIC = DegradationConfig()


def _save(path: Path, img: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)
    return path


@pytest.fixture(scope="module")
def t91(shared_data: Path) -> list[np.ndarray]:
    files = sorted((shared_data / "T91").glob("*.bmp"))[:6]
    return [patches.read_rgb8(f)[:64, :64] for f in files]


@pytest.mark.parametrize(
    ("stem", "key"),
    [
        ("0001", "0001"),
        ("0001x4", "0001"),
        ("0001_x4", "0001"),
        ("0001-X4", "0001"),
        ("img_001_SRF_4_LR", "img_001"),
        ("img_001_SRF_4_HR", "img_001"),
        ("baby_LRx4", "baby"),
        ("Baby_GT", "baby"),
        ("hr", "hr"),
    ],
)
def test_pair_key(stem: str, key: str) -> None:
    assert patches.pair_key(stem) == key


def test_match_pairs_by_name_not_order() -> None:
    hr = [Path(f"HR/{n}.png") for n in ("apple", "bird", "cat", "dog")]
    lr = [Path(f"LR/{n}.png") for n in ("dog_x4", "birdx4", "zebra_x4", "APPLE_LR")]
    for _ in range(3):
        random.Random(_).shuffle(lr)
        pairs, problems = patches.match_pairs(hr, lr)
        assert [(h.stem, low.stem) for h, low in pairs] == [
            ("apple", "APPLE_LR"),
            ("bird", "birdx4"),
            ("dog", "dog_x4"),
        ]
        assert sorted(problems) == [
            "cat.png: no LR file matches",
            "zebra_x4.png: no HR file matches",
        ]


def test_match_pairs_reports_ambiguous_names() -> None:
    pairs, problems = patches.match_pairs(
        [Path("a.png"), Path("b.png")], [Path("a_x4.png"), Path("ax4.png"), Path("b.png")]
    )
    assert [p[0].stem for p in pairs] == ["b"]
    assert any("share the name key 'a'" in p for p in problems)


def test_matlab_reference_names_pair_up(shared_data: Path) -> None:
    folder = shared_data / "matlab_bicubic" / "Set5" / "image_SRF_4"
    hr = [f for f in folder.iterdir() if f.stem.endswith("_HR")]
    lr = [f for f in folder.iterdir() if f.stem.endswith("_LR")]
    pairs, problems = patches.match_pairs(hr, lr)
    assert len(pairs) == 5 and not problems
    assert all(h.stem.replace("_HR", "") == low.stem.replace("_LR", "") for h, low in pairs)


def test_paired_folder_skips_size_mismatch(tmp_path: Path, t91: list[np.ndarray]) -> None:
    root = tmp_path / "pairs"
    for i, img in enumerate(t91[:4]):
        _save(root / "HR" / f"im{i}.png", img)
        lr = degrade.bicubic(img, 4)
        if i == 2:
            lr = lr[:-1]  # wrong size
        _save(root / "LR_bicubic" / "X4" / f"im{i}x4.png", lr)
    _save(root / "LR_bicubic" / "X4" / "orphanx4.png", degrade.bicubic(t91[5], 4))
    assert patches.find_pair_dirs(root, 4) == (root / "HR", root / "LR_bicubic" / "X4")
    assert patches.find_pair_dirs(root, 2) is None
    pairs, summary = patches.load_pairs([root], scale=4, degradation=BICUBIC)
    assert [p.name for p in pairs] == ["pairs/im0", "pairs/im1", "pairs/im3"]
    assert any("im2: HR 64x64 does not match LR 16x15" in s for s in summary.skipped)
    assert any("orphanx4.png: no HR file matches" in s for s in summary.skipped)
    assert summary.paired == 4
    assert np.array_equal(pairs[1].lr, degrade.bicubic(t91[1], 4))


def test_hr_folder_makes_protocol_lr_once(tmp_path: Path, shared_data: Path) -> None:
    img = patches.read_rgb8(shared_data / "BSD200" / "100075.png")
    _save(tmp_path / "hr" / "a.png", img)
    _save(tmp_path / "hr" / "b.png", patches.read_rgb8(shared_data / "Set14" / "bridge.png"))
    (tmp_path / "hr" / "notes.txt").write_text("not an image")
    pairs, summary = patches.load_pairs([tmp_path / "hr"], scale=4, degradation=BICUBIC)
    assert len(pairs) == 2 and not summary.skipped and summary.cache_mb > 0
    a = pairs[0]
    assert a.hr.shape == (320, 480, 3)  # 321x481 cropped to a multiple of 4
    assert np.array_equal(a.lr, degrade.bicubic(img[:320, :480], 4))
    grey = pairs[1].hr
    assert grey.shape[2] == 3 and np.array_equal(grey[..., 0], grey[..., 2])
    practical = DegradationConfig(kind="practical")
    pairs, _ = patches.load_pairs([tmp_path / "hr"], scale=4, degradation=practical)
    assert pairs[0].lr is None  # drawn per patch


@pytest.mark.parametrize("patch", [128, 192])
def test_patches_align_with_lr(shared_data: Path, patch: int) -> None:
    img = patches.read_rgb8(shared_data / "BSD200" / "100075.png")[:320, :480]
    pair = patches.ImagePair("a", img, degrade.bicubic(img, 4))
    ds = patches.PatchDataset([pair], scale=4, patch_size=patch, degradation=BICUBIC)
    seeds = [s for _, s in patches.PatchSampler(1, global_batch=6, seed=0).batch(0)]
    for seed in seeds:
        lr, hr = ds[(0, seed)]
        assert lr.shape == (3, patch // 4, patch // 4) and hr.shape == (3, patch, patch)
        hr8 = np.rint(hr.permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        lr8 = np.rint(lr.permute(1, 2, 0).numpy() * 255).astype(int)
        inner = (slice(3, -3), slice(3, -3))
        assert np.abs(degrade.bicubic(hr8, 4).astype(int)[inner] - lr8[inner]).max() <= 1
    a, b = ds[(0, seeds[0])], ds[(0, seeds[0])]
    assert all(np.array_equal(x.numpy(), y.numpy()) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(ds[(0, seeds[1])][1].numpy(), a[1].numpy())


def test_practical_patches(shared_data: Path) -> None:
    img = patches.read_rgb8(shared_data / "BSD200" / "100075.png")[:128, :128]
    ds = patches.PatchDataset(
        [patches.ImagePair("a", img, None)],
        scale=4,
        patch_size=64,
        degradation=DegradationConfig(kind="practical"),
    )
    lr, hr = ds[(0, 123)]
    assert lr.shape == (3, 16, 16) and hr.shape == (3, 64, 64)
    assert np.array_equal(ds[(0, 123)][0].numpy(), lr.numpy())


def test_sampler_shards_resumes_and_covers_epochs() -> None:
    one = patches.PatchSampler(10, global_batch=4, seed=3)
    ranks = [patches.PatchSampler(10, global_batch=4, seed=3, rank=r, world_size=2) for r in (0, 1)]
    for step in (0, 1, 7):
        assert ranks[0].batch(step) + ranks[1].batch(step) == one.batch(step)
    resumed = iter(patches.PatchSampler(10, global_batch=4, seed=3, start_step=5))
    assert next(resumed) == one.batch(5)
    stream = [i for step in range(5) for i, _ in one.batch(step)]  # 20 patches = 2 epochs
    assert sorted(stream[:10]) == list(range(10)) and sorted(stream[10:]) == list(range(10))
    assert stream[:10] != stream[10:]  # a new order each epoch
    seeds = [s for step in range(5) for _, s in one.batch(step)]
    assert len(set(seeds)) == 20
    with pytest.raises(DataError, match="not divisible"):
        patches.PatchSampler(10, global_batch=5, seed=0, world_size=2)


def test_validation_split_and_crop(t91: list[np.ndarray]) -> None:
    pairs = [patches.ImagePair(f"i{i}", im, degrade.bicubic(im, 4)) for i, im in enumerate(t91)]
    train, val = patches.split_validation(pairs, 2, seed=0)
    assert len(train) == 4 and len(val) == 2
    assert {p.name for p in train}.isdisjoint({p.name for p in val})
    assert patches.split_validation(pairs, 2, seed=0)[1] == val
    cropped = patches.make_validation(val, scale=4, degradation=BICUBIC, crop=32, seed=0)
    assert cropped[0].hr.shape == (32, 32, 3) and cropped[0].lr.shape == (8, 8, 3)
    assert np.array_equal(cropped[0].lr, val[0].lr[4:12, 4:12])
    kept = patches.patchable(pairs, 64) + patches.patchable(pairs, 65)
    assert len(kept) == 6


def test_resolve_source(tmp_path: Path) -> None:
    assert patches.resolve_source(str(tmp_path)) == tmp_path
    with pytest.raises(DataError, match="no such folder"):
        patches.resolve_source(str(tmp_path / "missing"))
    (tmp_path / "f.png").write_bytes(b"")
    with pytest.raises(DataError, match="not a folder"):
        patches.resolve_source(str(tmp_path / "f.png"))
    with pytest.raises(DataError):
        patches.resolve_source("NO_SUCH_DATASET_NAME", tmp_path)


def test_empty_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no images found"):
        patches.load_pairs([tmp_path], scale=4, degradation=BICUBIC)


def test_dataset_names_resolve_under_the_data_root(shared_data: Path) -> None:
    assert patches.resolve_source("T91", shared_data) == shared_data / "T91"
    with pytest.raises(DataError, match="unknown dataset 'NoSuchSet'"):
        patches.resolve_source("NoSuchSet", shared_data)
