"""Checkpoints: self-describing round trips, EMA preference, and refusal of bad files."""

from __future__ import annotations

import json
import os
import pickle
import struct
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from srtool.errors import ModelError  # noqa: E402
from srtool.models import ARCHS, DISCRIMINATORS, build  # noqa: E402
from srtool.models.checkpoint import (  # noqa: E402
    is_checkpoint,
    load_checkpoint,
    load_checkpoint_meta,
    load_state,
    save_checkpoint,
)
from srtool.train.run import RunDir  # noqa: E402

TINY = {
    "srresnet": {"features": 8, "blocks": 1},
    "rrdbnet": {"features": 8, "blocks": 1, "growth": 4},
    "compact": {"features": 8, "convs": 1},
    "span": {"features": 8, "blocks": 1, "convs": 2},
    "vgg": {"features": 4},
    "unet_sn": {"features": 4},
}


def tiny(arch: str, seed: int = 0, **extra: object) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build(arch, **TINY[arch], **extra)


def split(path: Path) -> tuple[dict, bytes]:
    """A safetensors file's JSON header and its data section."""
    blob = path.read_bytes()
    (size,) = struct.unpack("<Q", blob[:8])
    return json.loads(blob[8 : 8 + size]), blob[8 + size :]


def join(path: Path, header: dict, data: bytes) -> None:
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)


def edit_meta(path: Path, **changes: object) -> None:
    """Rewrite the srtool metadata consistently (valid safetensors, edited claims)."""
    header, data = split(path)
    meta = json.loads(header["__metadata__"]["srtool"])
    meta.update(changes)
    header["__metadata__"]["srtool"] = json.dumps(meta)
    join(path, header, data)


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Path, torch.nn.Module]:
    model = tiny("compact", scale=2).eval()
    path = save_checkpoint(tmp_path / "model.safetensors", model, meta={"step": 7})
    return path, model


@pytest.mark.parametrize("arch", sorted(ARCHS) + sorted(DISCRIMINATORS))
def test_round_trip_rebuilds_from_the_file_alone(tmp_path: Path, arch: str) -> None:
    model = tiny(arch).eval()
    recipe = {"model": {"arch": arch}, "train": {"lr": 2e-4}}
    path = save_checkpoint(
        tmp_path / "sub" / "ck.safetensors", model, meta={"step": 123, "recipe": recipe}
    )
    loaded, meta = load_checkpoint(path)
    assert type(loaded) is type(model) and not loaded.training
    assert meta["arch"] == arch and meta["hparams"] == model.hparams
    assert meta["step"] == 123 and meta["recipe"] == recipe
    assert meta["format_version"] == 1 and meta["ema"] is False and meta["weights"] == "raw"
    assert meta["params"] == sum(p.numel() for p in model.parameters())
    if arch in ARCHS:
        assert meta["scale"] == model.scale == loaded.scale
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert [p.name for p in path.parent.iterdir()] == ["ck.safetensors"]  # no temp file left


def test_ema_weights_are_preferred_when_present(tmp_path: Path) -> None:
    raw, ema = tiny("compact", seed=1).eval(), tiny("compact", seed=2).eval()
    path = save_checkpoint(tmp_path / "ck.safetensors", raw, meta={"step": 1}, ema=ema)
    x = torch.rand(1, 3, 9, 9)
    loaded, meta = load_checkpoint(path)
    assert meta["ema"] is True and meta["weights"] == "ema"
    loaded_raw, meta_raw = load_checkpoint(path, prefer_ema=False)
    assert meta_raw["weights"] == "raw"
    with torch.no_grad():
        assert torch.equal(loaded(x), ema(x))
        assert torch.equal(loaded_raw(x), raw(x))
        assert not torch.equal(loaded(x), loaded_raw(x))


def test_plain_safetensors_readers_see_an_ordinary_state_dict(saved) -> None:
    from safetensors.torch import load_file

    path, model = saved
    assert set(load_file(path)) == set(model.state_dict())


def test_meta_is_read_without_the_tensors(saved) -> None:
    path, model = saved
    meta = load_checkpoint_meta(path)
    assert meta["arch"] == "compact" and meta["step"] == 7 and meta["hparams"] == model.hparams
    assert is_checkpoint(path)


def test_flipped_weight_bytes_are_refused(saved) -> None:
    path, _ = saved
    blob = bytearray(path.read_bytes())
    blob[-5] ^= 0x40  # inside the last tensor's data
    path.write_bytes(bytes(blob))
    with pytest.raises(ModelError, match="SHA-256.*corrupt or was modified"):
        load_checkpoint(path)


def test_edited_hparams_are_refused_naming_the_tensor(saved) -> None:
    path, _ = saved
    edit_meta(path, hparams={**load_checkpoint_meta(path)["hparams"], "features": 16})
    with pytest.raises(
        ModelError, match=r"body\.0\.weight has shape \(8, 3, 3, 3\).*\(16, 3, 3, 3\)"
    ):
        load_checkpoint(path)


def test_edited_arch_is_refused(saved) -> None:
    path, _ = saved
    edit_meta(path, arch="edsr")
    with pytest.raises(ModelError, match="unknown architecture 'edsr'"):
        load_checkpoint(path)
    edit_meta(path, arch="srresnet")
    with pytest.raises(ModelError, match="srresnet: unknown hyper-parameter"):
        load_checkpoint(path)


def test_newer_format_is_refused(saved) -> None:
    path, _ = saved
    edit_meta(path, format_version=99)
    with pytest.raises(ModelError, match="newer srtool"):
        load_checkpoint(path)


def test_edited_ema_flag_is_refused(saved) -> None:
    path, _ = saved
    edit_meta(path, ema=True)
    with pytest.raises(ModelError, match="ema=True but the file has no EMA weights"):
        load_checkpoint(path)


def test_weights_of_another_shape_are_refused(tmp_path: Path) -> None:
    """A file whose tensors were swapped for another model's (same arch, other width)."""
    small, big = tiny("compact"), build("compact", features=4, convs=1)
    path = save_checkpoint(tmp_path / "a.safetensors", small, meta={})
    other = save_checkpoint(tmp_path / "b.safetensors", big, meta={})
    header, _ = split(path)
    other_header, other_data = split(other)
    other_header["__metadata__"] = header["__metadata__"]
    join(path, other_header, other_data)
    with pytest.raises(ModelError, match="do not match the compact architecture"):
        load_checkpoint(path)


def test_corrupt_header_is_refused(saved) -> None:
    path, _ = saved
    blob = bytearray(path.read_bytes())
    blob[8] = ord("x")  # the JSON header's opening brace
    path.write_bytes(bytes(blob))
    with pytest.raises(ModelError, match="corrupt safetensors header"):
        load_checkpoint(path)


def test_truncated_file_is_refused(saved) -> None:
    path, _ = saved
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ModelError, match="cannot read the tensors"):
        load_checkpoint(path)
    path.write_bytes(b"abc")
    with pytest.raises(ModelError, match="not a safetensors file"):
        load_checkpoint(path)


def test_missing_file_and_foreign_safetensors(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    with pytest.raises(ModelError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nope.safetensors")
    save_file({"w": torch.zeros(2)}, tmp_path / "plain.safetensors")
    with pytest.raises(ModelError, match="not an srtool checkpoint"):
        load_checkpoint(tmp_path / "plain.safetensors")
    assert not is_checkpoint(tmp_path / "plain.safetensors")


class _Payload:
    """Unpickling this creates a file: proof of whether a loader ran pickle."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickles_are_never_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.safetensors"
    evil.write_bytes(pickle.dumps({"w": _Payload(str(marker))}))
    with pytest.raises(ModelError):
        load_checkpoint(evil)
    with pytest.raises(ModelError):
        load_checkpoint_meta(evil)
    assert not marker.exists()


def test_only_registered_models_can_be_saved(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="only registered srtool architectures"):
        save_checkpoint(tmp_path / "x.safetensors", torch.nn.Conv2d(3, 3, 3), meta={})


def test_unserialisable_meta_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not JSON-serialisable"):
        save_checkpoint(tmp_path / "x.safetensors", tiny("compact"), meta={"when": object()})
    assert not list(tmp_path.iterdir())


def test_reserved_meta_keys_cannot_lie(tmp_path: Path) -> None:
    path = save_checkpoint(
        tmp_path / "x.safetensors", tiny("compact"), meta={"arch": "rrdbnet", "scale": 9}
    )
    meta = load_checkpoint_meta(path)
    assert meta["arch"] == "compact" and meta["scale"] == 4


def test_overwrite_is_atomic_and_keeps_one_file(saved) -> None:
    path, model = saved
    save_checkpoint(path, model, meta={"step": 8})
    assert load_checkpoint_meta(path)["step"] == 8
    assert sorted(os.listdir(path.parent)) == ["model.safetensors"]


def test_load_state_returns_verified_tensors(saved) -> None:
    path, model = saved
    state, meta = load_state(path)
    assert meta["weights"] == "raw"
    for key, value in model.state_dict().items():
        assert torch.equal(state[key], value)


def test_run_folder_prefers_best_then_latest(tmp_path: Path) -> None:
    model = tiny("compact")
    run = tmp_path / "run"
    with pytest.raises(ModelError, match="no srtool checkpoint"):
        run.mkdir()
        RunDir(run).export_checkpoint()
    save_checkpoint(run / "checkpoints" / "step_000100.safetensors", model, meta={"step": 100})
    save_checkpoint(run / "checkpoints" / "step_000300.safetensors", model, meta={"step": 300})
    save_checkpoint(run / "checkpoints" / "step_000200.safetensors", model, meta={"step": 200})
    assert RunDir(run).export_checkpoint().name == "step_000300.safetensors"
    save_checkpoint(run / "best.safetensors", model, meta={"step": 150})
    assert RunDir(run).export_checkpoint().name == "best.safetensors"
    with pytest.raises(ModelError, match="not found"):
        RunDir(tmp_path / "missing").export_checkpoint()


def test_wrapped_models_are_saved_under_their_own_key_names(tmp_path: Path) -> None:
    model = tiny("compact")
    wrapped = torch.nn.DataParallel(model)
    assert next(iter(wrapped.state_dict())).startswith("module.")
    path = save_checkpoint(tmp_path / "w.safetensors", wrapped, meta={}, ema=wrapped)
    loaded, meta = load_checkpoint(path)
    assert meta["arch"] == "compact" and meta["ema"] is True
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded(x), model.eval()(x))


_BOUNDED_LOAD = """
import json, resource, sys, time
from srtool.errors import ModelError
from srtool.models.checkpoint import load_checkpoint

vm = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0]) * 1024
resource.setrlimit(resource.RLIMIT_AS, (vm + (1 << 30), resource.RLIM_INFINITY))
before, start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.perf_counter()
try:
    load_checkpoint(sys.argv[1])
    outcome = ("loaded", "")
except Exception as exc:
    outcome = (type(exc).__name__, str(exc))
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(json.dumps([*outcome, time.perf_counter() - start, grown * 1024]))
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("hparams", [{"features": 6000}, {"features": 1, "convs": 2_000_000}])
def test_huge_hparams_are_refused_before_allocating(saved, hparams: dict) -> None:
    """A header whose hparams describe a network of gigabytes (or millions of layers) is refused
    from the header alone: fast, within a 1 GiB address-space allowance, as a ModelError."""
    import subprocess
    import sys

    path, _ = saved
    edit_meta(path, hparams={**load_checkpoint_meta(path)["hparams"], **hparams})
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", _BOUNDED_LOAD, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    kind, message, seconds, grown = json.loads(done.stdout.strip().splitlines()[-1])
    assert kind == "ModelError", message
    assert message.startswith("model.safetensors: ") and "\n" not in message
    assert seconds < 10 and grown < 200 << 20


def test_run_folder_passes_over_a_truncated_best(tmp_path: Path, caplog) -> None:
    """``export RUN`` with a truncated best.safetensors uses the latest intact checkpoint and
    says why; with nothing intact left it refuses, naming the problem."""
    model = tiny("compact")
    run = tmp_path / "run"
    ck = run / "checkpoints"
    save_checkpoint(ck / "step_000100.safetensors", model, meta={"step": 100})
    save_checkpoint(ck / "step_000200.safetensors", model, meta={"step": 200})
    best = save_checkpoint(ck / "best.safetensors", model, meta={"step": 150})
    best.write_bytes(best.read_bytes()[:-100])
    with caplog.at_level("WARNING", logger="srtool"):
        assert RunDir(run).export_checkpoint().name == "step_000200.safetensors"
    assert "best.safetensors: cannot read the tensors" in caplog.text
    assert "using step_000200.safetensors" in caplog.text
    for path in ck.glob("step_*"):
        path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ModelError, match="no intact checkpoint: best.safetensors"):
        RunDir(run).export_checkpoint()


def test_pickle_refusal_is_one_clean_line(tmp_path: Path) -> None:
    """torch's refusal (terminal colour codes, "Re-running `torch.load` with `weights_only`
    set to `False`...") becomes one line naming the global the pickle asked for."""
    from typer.testing import CliRunner

    from srtool.cli import app

    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    torch.save({"body.0.weight": _Payload(str(marker))}, evil)
    res = CliRunner().invoke(app, ["export", str(evil), "-o", str(tmp_path / "x.onnx")])
    text = " ".join(res.output.split())
    assert res.exit_code == 2, res.output
    assert "evil.pth: refused to load: it calls the Python global io.open" in text
    assert "\x1b" not in res.output and "weights_only" not in res.output
    assert "nothing in the file was run" in text and not marker.exists()
