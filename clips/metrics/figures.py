"""The two TMTV figures of every evaluation: predicted vs true, and Bland-Altman."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # no display on the training machines
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from clips.metrics.summary import MIN_PATIENTS, TOO_FEW  # noqa: E402


def tmtv_scatter(table: pd.DataFrame, title: str = ""):
    t, p = table["tmtv_true_ml"].to_numpy(float), table["tmtv_pred_ml"].to_numpy(float)
    fig, ax = plt.subplots(figsize=(7.5, 5))
    ax.scatter(t, p, s=18, alpha=0.8)
    top = float(max(t.max(initial=1), p.max(initial=1))) * 1.05
    ax.plot([0, top], [0, top], "k--", lw=1, label="identity")
    if len(t) >= MIN_PATIENTS and np.std(t) > 0:
        slope, intercept = np.polyfit(t, p, 1)
        ax.plot([0, top], [intercept, intercept + slope * top], "C1", lw=1.5,
                label=f"fit: {slope:.2f} x + {intercept:.1f} ml")
    elif len(t):
        ax.text(0.5, 0.04, f"{len(t)} patient(s): {TOO_FEW}", transform=ax.transAxes, ha="center", fontsize=8)
    ax.set(xlim=(0, top), ylim=(0, top), xlabel="true TMTV (ml)", ylabel="predicted TMTV (ml)",
           title=title or "TMTV: predicted vs true")
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0, fontsize=8)  # outside the data
    fig.tight_layout()
    return fig


def draw_bland_altman(ax, table: pd.DataFrame, marker_size: float = 18, legend: bool = True) -> None:
    """Bland-Altman of TMTV on ``ax``: differences against means, bias and 95% limits of agreement."""
    t, p = table["tmtv_true_ml"].to_numpy(float), table["tmtv_pred_ml"].to_numpy(float)
    mean, diff = (t + p) / 2, p - t
    ax.scatter(mean, diff, s=marker_size, alpha=0.8)
    if len(diff):
        bias = diff.mean()
        lines = [(bias, "-", f"bias {bias:.1f} ml")]
        if len(diff) >= MIN_PATIENTS:
            sd = diff.std(ddof=1)
            lines += [(bias + 1.96 * sd, "--", f"+1.96 SD {bias + 1.96 * sd:.1f}"),
                      (bias - 1.96 * sd, "--", f"-1.96 SD {bias - 1.96 * sd:.1f}")]
        else:
            ax.text(0.5, 0.04, f"{len(diff)} patient(s): no limits of agreement, {TOO_FEW}",
                    transform=ax.transAxes, ha="center", fontsize=7)
        for y, style, label in lines:
            ax.axhline(y, color="C1", ls=style, lw=1, label=label)
        if legend:
            ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0, fontsize=8)  # outside the data
    ax.axhline(0, color="k", lw=0.5)


def bland_altman(table: pd.DataFrame, title: str = ""):
    fig, ax = plt.subplots(figsize=(8, 4.5))
    draw_bland_altman(ax, table)
    ax.set(xlabel="mean of true and predicted TMTV (ml)", ylabel="predicted - true (ml)",
           title=title or "TMTV: Bland-Altman")
    fig.tight_layout()
    return fig
