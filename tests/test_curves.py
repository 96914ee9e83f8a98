"""Training curves: a legend and labelled axes on every panel, markers on short runs."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

from srtool.train.curves import curves_figure, plot_curves  # noqa: E402


def short_run(gan: bool = False) -> list[dict[str, float]]:
    rows: list[dict[str, float]] = []
    for step in (10, 20):
        row = {"step": step, "loss_g": 0.1 / step, "loss_pixel": 0.1 / step, "lr": 1e-3}
        if gan:
            row.update(loss_gan=0.01, loss_d=0.6, d_real=0.8, d_fake=0.2)
        rows.append(row)
    rows.append({"step": 20, "val_psnr": 25.0, "val_ssim": 0.8})
    return rows


@pytest.mark.parametrize("gan", [False, True])
def test_short_run_panels_have_legends_labels_and_markers(gan: bool) -> None:
    import matplotlib.pyplot as plt

    fig = curves_figure(short_run(gan), title="demo")
    try:
        axes = [ax for ax in fig.axes if ax.get_title()]  # the twin SSIM axis has no title
        assert len(axes) == (3 if gan else 2)
        for ax in axes:
            assert ax.get_legend() is not None, ax.get_title()
            assert ax.get_xlabel() == "step" and ax.get_ylabel()
            for line in ax.get_lines():
                assert line.get_marker() not in (None, "None", "")  # 2 points: visible
            ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
            assert all(float(t).is_integer() for t in ticks)
        validation = axes[-1]
        labels = [t.get_text() for t in validation.get_legend().get_texts()]
        assert labels == ["PSNR-Y", "SSIM-Y"]
    finally:
        plt.close(fig)


def test_long_runs_have_no_markers_on_loss_lines() -> None:
    import matplotlib.pyplot as plt

    rows = [{"step": s, "loss_g": 1.0 / s} for s in range(1, 101)]
    fig = curves_figure(rows)
    try:
        assert fig.axes[0].get_lines()[0].get_marker() in (None, "None", "")
        assert fig.axes[-1].get_legend() is not None  # no validation yet: still a legend
    finally:
        plt.close(fig)


def test_single_step_run_writes_a_png(tmp_path: Path) -> None:
    out = plot_curves([{"step": 1, "loss_g": 0.05}], tmp_path / "curves.png")
    assert out == tmp_path / "curves.png"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".*tmp*"))
