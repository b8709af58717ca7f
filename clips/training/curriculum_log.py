"""What a run shows of its curriculum: the difficulty table, a long per-patient table, and a figure."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import mlflow  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from clips.tracking import schema


class CurriculumLog:
    """Collects (patient_id, epoch, difficulty, included, weight, loss) rows and logs them."""

    def __init__(self, patient_ids: list[str], difficulty: np.ndarray, rows: list[dict] | None = None):
        self.ids, self.difficulty = patient_ids, np.asarray(difficulty, float)
        self.rows: list[dict] = rows or []

    def record(self, epoch: int, weights: np.ndarray, losses: np.ndarray) -> None:
        w = np.asarray(weights, float)
        w = w / w.sum() * len(w)  # 1 = the uniform share
        for i, pid in enumerate(self.ids):
            self.rows.append({"patient_id": pid, "epoch": epoch, "difficulty": float(self.difficulty[i]),
                              "included": bool(w[i] > 0), "weight": float(w[i]), "loss": float(losses[i])})

    def indexed_rows(self) -> list[dict]:
        """The rows with each patient as its index in the training's patient list: what a checkpoint keeps, so
        that the file, mirrored to the tracking server, names no patient."""
        index = {pid: i for i, pid in enumerate(self.ids)}
        return [r | {"patient_id": index[r["patient_id"]]} for r in self.rows]

    def restore_rows(self, rows: list[dict]) -> None:
        """The inverse of :meth:`indexed_rows` (older checkpoints kept the ids themselves)."""
        self.rows = [r | {"patient_id": self.ids[r["patient_id"]]} if isinstance(r["patient_id"], int) else r
                     for r in rows]

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=["patient_id", "epoch", "difficulty", "included", "weight", "loss"])

    def log(self, privacy=None) -> None:
        table = self.table()
        if table.empty:
            return
        if privacy is not None:
            table = privacy.table(table)
        mlflow.log_table(table, schema.CURRICULUM_LONG)
        fig = self.figure(table)
        mlflow.log_figure(fig, schema.CURRICULUM_FIGURE)
        plt.close(fig)

    def figure(self, table: pd.DataFrame):
        grid = table.pivot(index="patient_id", columns="epoch", values="weight")
        names = table["patient_id"].iloc[: len(self.ids)].tolist()  # rows go epoch by epoch, in self.ids order
        order = pd.Series(self.difficulty, index=names).sort_values(kind="stable").index
        grid = grid.reindex(order)
        # sized to the content, never below what the title, labels and colour bar need (small runs cut them)
        fig, ax = plt.subplots(figsize=(min(12, max(6.5, 3 + 0.25 * grid.shape[1])),
                                        min(10, max(3.8, 2 + 0.18 * grid.shape[0]))))
        im = ax.imshow(grid.to_numpy(float), aspect="auto", cmap="viridis", interpolation="nearest", vmin=0)
        ax.set(xlabel="epoch", ylabel="training patients\n(easy at the top, hard at the bottom)",
               title="curriculum: sampling weight per patient and epoch\n(0 = left out)")
        step = max(1, grid.shape[1] // 25)  # at most about 25 epoch labels
        ax.set_xticks(range(0, grid.shape[1], step), [str(c + 1) for c in grid.columns[::step]], fontsize=7)
        ax.set_yticks(range(grid.shape[0]), list(grid.index), fontsize=6 if grid.shape[0] <= 60 else 4)
        fig.colorbar(im, ax=ax, label="weight (1 = uniform share)")
        fig.tight_layout()
        return fig
