"""srtool's own LPIPS v0.1 (AlexNet): the reference implementation's numbers on generated
images, the weights lookup, and the checksum-pinned download from a local HTTP server."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from srtool.cli import app
from srtool.errors import DataError, ModelError, UsageError
from srtool.evaluate import lpips
from srtool.evaluate.benchmarks import read_u8

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")


def _text(result) -> str:  # noqa: ANN001 - Rich wraps lines at the console width
    return " ".join(result.output.split())


@pytest.fixture()
def no_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty srtool cache and no $SRTOOL_LPIPS_WEIGHTS: the weights are nowhere."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    monkeypatch.setenv("LOCALAPPDATA", str(cache))
    monkeypatch.setattr(Path, "home", classmethod(lambda cls: cache))  # macOS' cache folder
    monkeypatch.delenv(lpips.WEIGHTS_ENV, raising=False)
    lpips._cached.cache_clear()
    return lpips.weights_cache_dir()


# ----------------------------------------------------------------------------- test images
# Integer arithmetic only (numpy's PCG64 ``integers`` and exact sums), so every platform makes
# the same pixels.


def _box_blur(img: np.ndarray, k: int) -> np.ndarray:
    """k x k mean filter, edges replicated, rounded to uint8."""
    h, w = img.shape[:2]
    p = np.pad(img.astype(np.float64), ((k // 2,) * 2, (k // 2,) * 2, (0, 0)), mode="edge")
    total = sum(p[dy : dy + h, dx : dx + w] for dy in range(k) for dx in range(k))
    return np.clip(np.rint(total / (k * k)), 0, 255).astype(np.uint8)


def _noise(seed: int, h: int, w: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _gradient(h: int, w: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    planes = [x * 255 // (w - 1), y * 255 // (h - 1), (x + y) * 255 // (h + w - 2)]
    return np.stack(planes, -1).astype(np.uint8)


def _texture(h: int, w: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    planes = [(x * 7 + y * 3) % 64 * 4, (x * 2 + y * 11) % 32 * 8, (x // 8 + y // 8) % 2 * 200 + 20]
    return np.stack(planes, -1).astype(np.uint8)


def _jitter(img: np.ndarray, seed: int, amount: int) -> np.ndarray:
    d = np.random.default_rng(seed).integers(-amount, amount + 1, img.shape)
    return np.clip(img.astype(np.int64) + d, 0, 255).astype(np.uint8)


def _pairs() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    n64, g64, t = _noise(1, 64, 64), _gradient(64, 64), _texture(96, 128)
    return {
        "noise64_vs_blur3": (n64, _box_blur(n64, 3)),
        "gradient64_vs_jitter20": (g64, _jitter(g64, 2, 20)),
        "texture96x128_vs_blur5": (t, _box_blur(t, 5)),
        "noise96x128_vs_noise": (_noise(3, 96, 128), _noise(4, 96, 128)),
    }


# Computed once, outside this repository, with the reference implementation: PyPI lpips 0.1.4
# (richzhang/PerceptualSimilarity; not a dependency of srtool). net = lpips.LPIPS(net="alex",
# pretrained=True, pnet_rand=True) (a random trunk, so nothing is downloaded; its packaged v0.1
# lin weights are torch.equal to the shared file's lin*.model.1.weight), then the shared file's
# features.{0,3,6,8,10}.{weight,bias} loaded into net.net.slice{1..5}.{0,3,6,8,10}.{weight,bias};
# each pair of _pairs() written as PNG and read back, then net(lpips.im2tensor(a),
# lpips.im2tensor(b)) on CPU in float32 (torch 2.14), printed to 6 decimals (the same value with
# the two images swapped).
REFERENCE = {
    "noise64_vs_blur3": 0.543112,
    "gradient64_vs_jitter20": 0.240560,
    "texture96x128_vs_blur5": 0.263021,
    "noise96x128_vs_noise": 0.161969,
}


def _png_roundtrip(img: np.ndarray, path: Path) -> np.ndarray:
    Image.fromarray(img).save(path)
    return read_u8(path)


def test_reproduces_the_reference_implementation(shared_weights: Path, tmp_path: Path) -> None:
    net = lpips.LPIPS.load(shared_weights / lpips.WEIGHTS_NAME)
    for name, (a, b) in _pairs().items():
        a = _png_roundtrip(a, tmp_path / f"{name}_a.png")
        b = _png_roundtrip(b, tmp_path / f"{name}_b.png")
        assert net(a, b) == pytest.approx(REFERENCE[name], abs=1e-4), name
        assert net(b, a) == pytest.approx(REFERENCE[name], abs=1e-4), name
        assert net(a, a) == pytest.approx(0.0, abs=1e-6)
    # the same through the training convention (float NCHW in [0, 1]) and the cached function
    a, b = _pairs()["texture96x128_vs_blur5"]
    ta, tb = (torch.from_numpy(x).permute(2, 0, 1)[None].float() / 255.0 for x in (a, b))
    assert net(ta, tb) == pytest.approx(REFERENCE["texture96x128_vs_blur5"], abs=1e-4)
    assert net(torch.from_numpy(a), torch.from_numpy(b)) == pytest.approx(net(a, b), abs=1e-7)
    value = lpips.lpips_distance(a, b, weights=shared_weights)
    assert value == pytest.approx(REFERENCE["texture96x128_vs_blur5"], abs=1e-4)
    # greyscale counts as the same grey in all three channels
    grey_a, grey_b = a[..., :1], b[..., :1]
    assert net(grey_a, grey_b) == pytest.approx(
        net(np.repeat(grey_a, 3, 2), np.repeat(grey_b, 3, 2)), abs=1e-7
    )


def test_forward_is_differentiable(shared_weights: Path) -> None:
    """Usable as a loss: per-image values of a batch, with gradients to the input."""
    net = lpips.LPIPS.load(shared_weights)
    x = torch.rand(2, 3, 48, 48, requires_grad=True)
    y = torch.rand(2, 3, 48, 48)
    d = net.forward(x * 2 - 1, y * 2 - 1)
    assert d.shape == (2,)
    d.sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0


def test_refuses_other_weights(shared_weights: Path, tmp_path: Path) -> None:
    state = safetensors_torch.load_file(str(shared_weights / lpips.WEIGHTS_NAME))
    state["lin2.model.1.weight"] = state["lin2.model.1.weight"] * 1.01
    bad = tmp_path / "other.safetensors"
    safetensors_torch.save_file(state, str(bad))
    with pytest.raises(ModelError, match="not the LPIPS v0.1 AlexNet weights"):
        lpips.LPIPS.load(bad)
    (tmp_path / "junk.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ModelError, match="not a safetensors file"):
        lpips.LPIPS.load(tmp_path / "junk.safetensors")


def test_weights_lookup_order(
    no_weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert no_weights.is_relative_to(tmp_path / "cache")
    assert lpips.find_weights() is None
    message = lpips.missing_message()
    assert lpips.WEIGHTS_ENV in message and str(no_weights) in message and "--download" in message

    no_weights.mkdir(parents=True)
    cached = no_weights / lpips.WEIGHTS_NAME
    cached.write_bytes(b"x")
    assert lpips.find_weights() == cached
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / lpips.WEIGHTS_NAME).write_bytes(b"x")
    monkeypatch.setenv(lpips.WEIGHTS_ENV, str(other))  # a folder holding the file
    assert lpips.find_weights() == other / lpips.WEIGHTS_NAME
    explicit = tmp_path / "mine.safetensors"
    explicit.write_bytes(b"x")
    assert lpips.find_weights(explicit) == explicit
    with pytest.raises(UsageError, match="no such file"):
        lpips.find_weights(tmp_path / "absent.safetensors")
    monkeypatch.setenv(lpips.WEIGHTS_ENV, str(tmp_path / "absent"))  # falls back to the cache
    assert lpips.find_weights() == cached


# ----------------------------------------------------------------------------- download


def _releases(shared: Path, folder: Path, *, damage: str | None = None) -> tuple[str, str]:
    """Write stand-ins of torchvision's AlexNet and the LPIPS authors' alex.pth, built from the
    shared file's tensors, as ``torch.save`` files; returns their names."""
    state = safetensors_torch.load_file(str(shared / lpips.WEIGHTS_NAME))
    trunk = {k: v for k, v in state.items() if k.startswith("features.")}
    trunk["classifier.1.weight"] = torch.zeros(4, 8)  # the full AlexNet has more: ignored
    lin = {k: v for k, v in state.items() if k.startswith("lin")}
    if damage == "value":
        trunk["features.8.bias"] = trunk["features.8.bias"].clone()
        trunk["features.8.bias"][0] += 1e-3
    elif damage == "missing":
        del lin["lin4.model.1.weight"]
    torch.save(trunk, folder / "alexnet-owt-7be5be79.pth")
    # alex.pth upstream is in the legacy (non-zip) format
    torch.save(lin, folder / "alex.pth", _use_new_zipfile_serialization=False)
    if damage == "html":
        (folder / "alex.pth").write_text("<html>moved</html>")
    return "alexnet-owt-7be5be79.pth", "alex.pth"


def test_download_builds_the_verified_cache(
    shared_weights: Path, server: tuple[str, Path], no_weights: Path
) -> None:
    url, www = server
    trunk, lin = _releases(shared_weights, www)
    path = lpips.download_weights(alexnet_url=f"{url}/{trunk}", lin_url=f"{url}/{lin}")
    assert path == no_weights / lpips.WEIGHTS_NAME
    assert sorted(p.name for p in no_weights.iterdir()) == [lpips.WEIGHTS_NAME]
    got = safetensors_torch.load_file(str(path))
    want = safetensors_torch.load_file(str(shared_weights / lpips.WEIGHTS_NAME))
    assert got.keys() == want.keys()
    assert all(torch.equal(got[k], want[k]) for k in want)
    assert lpips.find_weights() == path
    a, b = _pairs()["noise64_vs_blur3"]
    assert lpips.LPIPS.load()(a, b) == pytest.approx(REFERENCE["noise64_vs_blur3"], abs=1e-4)


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        ("value", "do not match the pinned checksum"),
        ("missing", "lacks lin4.model.1.weight"),
        ("html", "is not a PyTorch weights file"),
    ],
)
def test_download_refuses_a_wrong_file(
    shared_weights: Path, server: tuple[str, Path], no_weights: Path, damage: str, match: str
) -> None:
    url, www = server
    trunk, lin = _releases(shared_weights, www, damage=damage)
    with pytest.raises(DataError, match=match):
        lpips.download_weights(alexnet_url=f"{url}/{trunk}", lin_url=f"{url}/{lin}")
    assert list(no_weights.iterdir()) == []  # nothing cached, no partial download left
    assert lpips.find_weights() is None


def test_download_unreachable(no_weights: Path) -> None:
    with pytest.raises(DataError, match="could not download"):
        lpips.download_weights(alexnet_url="http://127.0.0.1:9/alexnet.pth", timeout=5)
    assert list(no_weights.iterdir()) == []


# ----------------------------------------------------------------------------- the CLI


def _hr_folder(tmp_path: Path) -> Path:
    hr = tmp_path / "hr"
    hr.mkdir()
    rng = np.random.default_rng(7)
    img = _box_blur(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), 5)
    Image.fromarray(img).save(hr / "blurred_noise.png")
    return hr


def test_cli_says_where_it_looked(no_weights: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    args = ["evaluate", "--hr", str(_hr_folder(tmp_path)), "--lpips", "--json", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    text = _text(result)
    assert "LPIPS not computed: weights lpips_alex_v0.1.safetensors not found" in text
    assert str(no_weights) in "".join(text.split()) and "--download" in text
    assert "lpips" not in json.loads(out.read_text())["metrics"]  # no column without values
    missing = CliRunner().invoke(app, [*args, "--lpips-weights", str(tmp_path / "nothing")])
    assert missing.exit_code == 2 and "no such file" in _text(missing)


def test_cli_download_then_lpips_column(
    shared_weights: Path,
    server: tuple[str, Path],
    no_weights: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, www = server
    trunk, lin = _releases(shared_weights, www)
    monkeypatch.setattr(lpips, "ALEXNET_URL", f"{url}/{trunk}")
    monkeypatch.setattr(lpips, "LIN_URL", f"{url}/{lin}")
    out = tmp_path / "report.json"
    args = ["evaluate", "--hr", str(_hr_folder(tmp_path)), "--lpips", "--no-ms-ssim"]
    result = CliRunner().invoke(app, [*args, "--download", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert (no_weights / lpips.WEIGHTS_NAME).is_file()
    data = json.loads(out.read_text())
    assert "lpips" in data["metrics"]
    rows = {r["method"]: r for r in data["results"]}  # bicubic and the default model
    row = rows["bicubic"]
    assert all(0.0 < r["lpips"] < 1.0 for r in rows.values())
    # now found in the cache without --download, and the same number
    again = CliRunner().invoke(app, [*args, "--json", str(out)])
    assert again.exit_code == 0, again.output
    again_rows = {r["method"]: r for r in json.loads(out.read_text())["results"]}
    assert again_rows["bicubic"]["lpips"] == row["lpips"]
