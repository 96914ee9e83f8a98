"""The efficient generator (span) and structural re-parameterisation (srtool.models.reparam).

The collapsed network must compute what the training graph computes (>= 100 dB in float64, at
image borders too), collapse idempotently into plain convolutions with a clean state dict, load
from a training checkpoint, and export to a graph whose activated convolutions onnxruntime's
CPU provider fuses (FusedConv with LeakyRelu), with no nearest-neighbour resize anywhere.
"""

from __future__ import annotations

import copy
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402

from srtool.models import build, deploy  # noqa: E402
from srtool.models.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from srtool.models.reparam import RepConv3x3  # noqa: E402

TINY = {"features": 8, "blocks": 2, "convs": 3}
LEGACY_EXPORTER = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def randomised(model: nn.Module, seed: int = 0, std: float = 0.2) -> nn.Module:
    """Every weight and bias drawn at random: no branch is silently zero or identity."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * std)
    return model


def psnr(reference: torch.Tensor, got: torch.Tensor) -> float:
    mse = (reference - got).double().pow(2).mean().item()
    peak = reference.double().abs().max().item()
    return math.inf if mse == 0 else 10 * math.log10(peak**2 / mse)


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("expand", [1, 2])
def test_collapsed_network_matches_the_training_graph(scale: int, expand: int) -> None:
    torch.manual_seed(scale)
    model = randomised(build("span", scale=scale, expand=expand, **TINY)).double().eval()
    collapsed = deploy(copy.deepcopy(model))
    x = torch.rand(2, 3, 13, 17, dtype=torch.float64)  # odd sizes: borders everywhere
    with torch.no_grad():
        want, got = model(x), collapsed(x)
    assert got.shape == want.shape == (2, 3, 13 * scale, 17 * scale)
    assert psnr(want, got) >= 100


def test_collapse_is_close_in_float32_too() -> None:
    model = randomised(build("span", scale=4, **TINY), std=0.1).eval()
    collapsed = deploy(copy.deepcopy(model))
    assert next(collapsed.parameters()).dtype == torch.float32
    x = torch.rand(1, 3, 20, 24)
    with torch.no_grad():
        torch.testing.assert_close(collapsed(x), model(x), rtol=1e-4, atol=1e-5)


def test_rep_block_alone_folds_exactly_including_the_border() -> None:
    for cin, cout in [(5, 5), (3, 7)]:
        block = randomised(RepConv3x3(cin, cout, expand=2)).double()
        assert block.identity == (cin == cout)
        conv = block.fused()
        assert type(conv) is nn.Conv2d and conv.kernel_size == (3, 3) and conv.padding == (1, 1)
        x = torch.randn(2, cin, 6, 9, dtype=torch.float64)
        with torch.no_grad():
            assert psnr(block(x), conv(x)) >= 100


def test_reparameterize_is_idempotent_and_leaves_plain_convs() -> None:
    model = randomised(build("span", scale=2, **TINY)).eval()
    assert any(isinstance(m, RepConv3x3) for m in model.modules())
    assert model.hparams["deploy"] is False
    assert model.reparameterize() is model
    state = {k: v.clone() for k, v in model.state_dict().items()}
    assert model.reparameterize() is model and deploy(model) is model  # again: nothing changes
    assert model.state_dict().keys() == state.keys()
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())

    kinds = {type(m).__name__ for m in model.modules()}
    assert "RepConv3x3" not in kinds
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            assert type(m) is nn.Conv2d  # plain convolutions only
    assert not any("expand" in k or "skip" in k for k in state)
    assert model.hparams["deploy"] is True
    # The hparams now describe the collapsed network: build() rebuilds it and the weights load.
    again = build("span", **model.hparams).eval()
    again.load_state_dict(model.state_dict(), strict=True)
    x = torch.rand(1, 3, 11, 9)
    with torch.no_grad():
        assert torch.equal(again(x), model(x))


def test_training_checkpoint_loads_then_collapses(tmp_path: Path) -> None:
    raw = randomised(build("span", scale=4, **TINY), seed=1, std=0.1)
    ema = randomised(build("span", scale=4, **TINY), seed=2, std=0.1)
    path = save_checkpoint(tmp_path / "ck.safetensors", raw, ema=ema, meta={"step": 5})
    loaded, meta = load_checkpoint(path)
    assert meta["hparams"]["deploy"] is False and meta["weights"] == "ema"
    x = torch.rand(1, 3, 10, 12)
    with torch.no_grad():
        want = ema.eval()(x)
        torch.testing.assert_close(loaded(x), want, rtol=0, atol=0)
        deployed = deploy(loaded)
        torch.testing.assert_close(deployed(x), want, rtol=1e-4, atol=1e-5)
    # a collapsed network saves and reloads as one too
    path2 = save_checkpoint(tmp_path / "deployed.safetensors", deployed, meta={"step": 5})
    again, meta2 = load_checkpoint(path2)
    assert meta2["hparams"]["deploy"] is True
    assert sum(p.numel() for p in again.parameters()) < sum(p.numel() for p in raw.parameters())
    with torch.no_grad():
        assert torch.equal(again(x), deployed(x))


def test_deploy_is_a_no_op_for_networks_without_rep_blocks() -> None:
    torch.manual_seed(0)
    model = build("compact", features=8, convs=2).eval()
    state = copy.deepcopy(model.state_dict())
    assert deploy(model) is model
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_deployed_macs_match_the_formula() -> None:
    from srtool.models.profile import measure_cost

    f, b, c, s = 16, 3, 2, 4
    model = deploy(build("span", scale=s, features=f, blocks=b, convs=c)).eval()
    per_lr_pixel = 9 * 3 * f + (b * c + 1) * 9 * f * f + 4 * f * f + 9 * f * 3 * s * s
    cost = measure_cost(model, size=(10, 14))
    assert cost.macs_per_output_pixel == pytest.approx(per_lr_pixel / s**2)


def test_invalid_hparams_are_rejected() -> None:
    from srtool.errors import ModelError

    with pytest.raises(ModelError, match="scale must be"):
        build("span", scale=5)
    with pytest.raises(ModelError, match=">= 1"):
        build("span", blocks=0)


# -- ONNX: the collapsed network exports cleanly and onnxruntime fuses its activations -----------


def optimised_graph(model: nn.Module, tmp_path: Path, level: str) -> tuple[object, Path]:
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    path = tmp_path / "model.onnx"
    torch.onnx.export(
        model,
        (torch.rand(1, 3, 16, 16),),
        str(path),
        input_names=["lr"],
        output_names=["sr"],
        opset_version=17,
        dynamo=False,
        dynamic_axes={"lr": {0: "batch", 2: "height", 3: "width"}},
    )
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    options.optimized_model_filepath = str(tmp_path / f"optimised-{level}.onnx")
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return onnx.load(options.optimized_model_filepath).graph, path


@LEGACY_EXPORTER
def test_onnxruntime_fuses_every_activation_into_its_conv(tmp_path: Path) -> None:
    b, c = TINY["blocks"], TINY["convs"]
    model = deploy(randomised(build("span", scale=4, **TINY), std=0.1)).eval()
    graph, path = optimised_graph(model, tmp_path, "ORT_ENABLE_EXTENDED")
    import onnx

    exported = Counter(n.op_type for n in onnx.load(str(path)).graph.node)
    assert exported["Conv"] == 1 + b * c + 1 + 1 + 1  # head, blocks, tail, 1x1 fuse, upsampler
    assert exported["LeakyRelu"] == b * (c - 1)
    assert not {"PRelu", "Resize", "Upsample"} & set(exported)  # no PReLU, no nearest skip

    ops = Counter(
        (
            n.op_type,
            next((a.s.decode() for a in n.attribute if a.name == "activation"), None),
        )
        for n in graph.node
    )
    assert ops[("FusedConv", "LeakyRelu")] == b * (c - 1)
    assert not any(op == "LeakyRelu" for op, _ in ops)  # none left standing alone
    assert sum(n for (op, _), n in ops.items() if "Conv" in op) == exported["Conv"]

    # Parity of the exported, optimised session with PyTorch at a new size.
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((1, 3, 9, 14), dtype=np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(session.run(["sr"], {"lr": x})[0], want, atol=1e-4)


@LEGACY_EXPORTER
def test_fused_activations_survive_the_full_optimisation_level(tmp_path: Path) -> None:
    """ORT_ENABLE_ALL rewrites to NCHWc convs; the activation must still ride on the conv."""
    b, c = TINY["blocks"], TINY["convs"]
    model = deploy(build("span", scale=2, **TINY)).eval()
    graph, _ = optimised_graph(model, tmp_path, "ORT_ENABLE_ALL")
    activated = [
        n
        for n in graph.node
        if "Conv" in n.op_type
        and any(a.name == "activation" and a.s == b"LeakyRelu" for a in n.attribute)
    ]
    assert len(activated) == b * (c - 1)
    assert not any(n.op_type == "LeakyRelu" for n in graph.node)


def test_srtool_exporter_takes_the_collapsed_network(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from srtool.export import export_onnx

    model = deploy(randomised(build("span", scale=3, **TINY), std=0.1)).eval()
    report = export_onnx(model, tmp_path / "span.onnx", write_card=False)
    assert all(r.max_abs < 1e-4 for r in report.parity)


def test_export_of_a_training_checkpoint_writes_the_collapsed_graph(tmp_path: Path) -> None:
    """A checkpoint saved from the training graph (branches and all) exports as the deployed
    network: one Conv per re-parameterisable block, ``deploy`` in the metadata, and onnxruntime
    matches the training graph."""
    import json

    import onnx
    import onnxruntime as ort

    from srtool.export import export_onnx
    from srtool.models.checkpoint import save_checkpoint

    b, c = TINY["blocks"], TINY["convs"]
    training = randomised(build("span", scale=2, **TINY), std=0.1).eval()
    ckpt = save_checkpoint(tmp_path / "span.safetensors", training, meta={"step": 1})
    report = export_onnx(ckpt, tmp_path / "span.onnx", write_card=False)
    graph = onnx.load(str(report.out_path)).graph
    assert Counter(n.op_type for n in graph.node)["Conv"] == 1 + b * c + 1 + 1 + 1
    assert json.loads(report.metadata["srtool.hparams"])["deploy"] is True
    assert report.hparams["deploy"] is True
    x = np.random.default_rng(1).random((1, 3, 11, 13), dtype=np.float32)
    session = ort.InferenceSession(str(report.out_path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        want = training(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(session.run(["sr"], {"lr": x})[0], want, atol=1e-4)
