"""What a run leaves for the user to read: metrics log (JSONL + CSV), TensorBoard events when
``tensorboard`` is installed, and loss / PSNR curves as a PNG (matplotlib, Agg backend)."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from srtool.train.run import RunDir

__all__ = ["MetricsLog", "curves_figure", "plot_curves"]

log = logging.getLogger("srtool")


class MetricsLog:
    """Appends rows to ``metrics.jsonl`` as they come and rewrites ``metrics.csv`` on flush.

    ``rows`` holds every row of the run (restored on resume), so curves and CSV always cover
    the whole run, not only the last process's part of it.
    """

    def __init__(
        self, run: RunDir, rows: list[dict[str, Any]] | None = None, tb: bool = True
    ) -> None:
        self.run = run
        self.rows: list[dict[str, Any]] = list(rows or [])
        self.jsonl = run.metrics_jsonl
        # a fresh run starts an empty file; a resumed one rewrites it from the saved rows,
        # dropping any rows logged after the state being resumed was saved
        self._rewrite_jsonl()
        self._tb = None
        if tb:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                log.debug("tensorboard not installed: no event files")
            else:
                self._tb = SummaryWriter(str(run.tensorboard_dir))

    def _rewrite_jsonl(self) -> None:
        with open(self.jsonl, "w", encoding="utf-8") as fh:
            for row in self.rows:
                fh.write(json.dumps(row) + "\n")

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        with open(self.jsonl, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")
        if self._tb is not None:
            step = int(row["step"])
            for key, value in row.items():
                if key != "step" and isinstance(value, (int, float)):
                    grouped = key.startswith(("loss_", "val_", "d_"))  # loss/g, val/psnr, d/real
                    tag = key.replace("_", "/", 1) if grouped else f"train/{key}"
                    self._tb.add_scalar(tag, value, step)

    def flush(self) -> None:
        keys: list[str] = []
        for row in self.rows:
            keys += [k for k in row if k not in keys]
        with open(self.run.metrics_csv, "w", encoding="utf-8", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=keys)
            writer.writeheader()
            writer.writerows(self.rows)
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        self.flush()
        if self._tb is not None:
            self._tb.close()


FEW_POINTS = 30
"""Below this many points a series is drawn with markers too (a single point is then visible)."""


def _style(n_points: int) -> dict[str, Any]:
    return {"marker": "o", "ms": 3} if n_points < FEW_POINTS else {}


def plot_curves(rows: list[dict[str, Any]], path: Path, title: str = "") -> Path | None:
    """Generator loss terms, discriminator loss and validation PSNR/SSIM against step."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib not installed: no curves.png (pip install 'srtool[train]')")
        return None
    fig = curves_figure(rows, title)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    try:
        fig.savefig(tmp, dpi=110)
    finally:
        plt.close(fig)
    tmp.replace(path)
    return path


def curves_figure(rows: list[dict[str, Any]], title: str = "") -> Any:
    """The matplotlib figure of :func:`plot_curves` (the caller closes it): one panel per group,
    each with a legend and labelled axes, integer steps, markers on short runs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    train_rows = [r for r in rows if "loss_g" in r]
    val_rows = [r for r in rows if "val_psnr" in r]
    d_keys = [k for k in ("loss_d", "d_real", "d_fake") if any(k in r for r in train_rows)]
    g_keys = [k for k in dict.fromkeys(k for r in train_rows for k in r) if k.startswith("loss_")]
    g_keys = [k for k in g_keys if k not in d_keys]
    total_label = "total"
    if len(g_keys) == 2 and "loss_g" in g_keys:  # one term: it is the total, draw it once
        total_label = f"total ({[k for k in g_keys if k != 'loss_g'][0].removeprefix('loss_')})"
        g_keys = ["loss_g"]
    panels = 1 + bool(d_keys) + 1
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 3.6), squeeze=False)
    axes = axes[0]
    ax = axes[0]
    for key in g_keys:
        pts = [(r["step"], r[key]) for r in train_rows if key in r]
        if pts:
            total = key == "loss_g"
            label = total_label if total else key.removeprefix("loss_")
            ax.plot(
                *zip(*pts, strict=True),
                label=label,
                lw=1.8 if total else 1,
                color="black" if total else None,
                zorder=3 - total,
                **_style(len(pts)),
            )
    ax.set(title="generator loss", xlabel="step", ylabel="loss")
    if any(v > 0 for r in train_rows for k, v in r.items() if k in g_keys):
        ax.set_yscale("log")
    if d_keys:
        ax = axes[1]
        for key in d_keys:
            pts = [(r["step"], r[key]) for r in train_rows if key in r]
            ax.plot(*zip(*pts, strict=True), label=key, lw=1, **_style(len(pts)))
        ax.set(title="discriminator", xlabel="step", ylabel="loss / mean output")
    ax = axes[-1]
    ax.set(title="validation", xlabel="step", ylabel="PSNR-Y (dB)")
    if val_rows:
        steps = [r["step"] for r in val_rows]
        ax.plot(steps, [r["val_psnr"] for r in val_rows], "o-", color="C2", ms=3, label="PSNR-Y")
        if any("val_ssim" in r for r in val_rows):
            ax2 = ax.twinx()
            ax2.plot(
                steps,
                [r.get("val_ssim", float("nan")) for r in val_rows],
                "s--",
                color="C3",
                ms=3,
                lw=0.8,
                label="SSIM-Y",
            )
            ax2.set_ylabel("SSIM-Y", color="C3")
            ax.yaxis.label.set_color("C2")
            ax2.get_yaxis().set_major_locator(MaxNLocator(nbins=6))
            # one legend for both axes, on the PSNR one
            handles, labels = ax.get_legend_handles_labels()
            more = ax2.get_legend_handles_labels()
            ax.legend(handles + more[0], labels + more[1], fontsize=8, loc="lower right")
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if ax.get_legend() is None:
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=8)
            else:  # nothing logged yet for this panel: say so rather than an empty frame
                ax.legend(handles=[], title="no data yet", loc="center", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
