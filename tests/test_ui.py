"""A run as a user meets it in the MLflow UI: its experiment, description, parameters and system metrics."""
import mlflow
from click.testing import CliRunner

from clips.cli import cli

TINY = ["-P", "model=tiny", "-P", "epochs=2", "-P", "steps_per_epoch=2", "-P", "patch_size=32", "-P", "spacing_mm=10"]


def test_a_trained_run_reads_well(tiny_cohort):
    res = CliRunner().invoke(cli, ["train", "--data-dir", str(tiny_cohort), *TINY])
    assert res.exit_code == 0, res.output
    (run,) = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert mlflow.get_experiment(run.info.experiment_id).name == "clips"  # not "Default"
    assert run.info.run_name == "none · smoke · seed 0"  # what it is, not adjective-animal-123
    note = run.data.tags["mlflow.note.content"]
    assert note.startswith("**none**: The baseline") and "TMTV-Net" in note
    assert "2 epochs x 2 steps" in note and "32x32x32 voxels at 10x10x10 mm" in note and str(tiny_cohort) in note
    assert not [k for k, v in run.data.params.items() if k.startswith("cfg.example.") or v == ""]
    history = mlflow.MlflowClient().get_metric_history(run.info.run_id, "system/cpu_percent")
    assert len(history) == 2 and all(0 <= m.value <= 100 * 1.05 for m in history)
    assert 0 < run.data.metrics["system/memory_gb"] < 64
    (logged,) = mlflow.MlflowClient().get_run(run.info.run_id).outputs.model_outputs
    best = int(run.data.metrics["best_epoch"])
    assert logged.step == best  # the model is linked to the epoch its weights come from
    model = mlflow.get_logged_model(logged.model_id)
    linked = {m.key: m for m in model.metrics}
    assert linked["val_dice"].step == best and "test_dice_mean" in linked and "system/cpu_percent" in linked
    assert "left)" in res.output  # the epoch lines say how long is left
    assert "test Dice " in res.output and "figures: figures/" in res.output and "look at it: make ui" in res.output
    from clips.tracking.reap import last_sign_of_life

    beat = run.data.tags["clips.heartbeat"]  # a time a person can read
    assert beat.endswith("Z") and "T" in beat and abs(last_sign_of_life(run) - run.info.end_time / 1000) < 120
    assert "(first time, cached after): 6/6 (done in" in res.output  # first-time preprocessing shows progress


def test_curriculum_figure_fits_its_title_and_labels_on_a_small_run():
    import numpy as np
    import pandas as pd

    from clips.training.curriculum_log import CurriculumLog

    ids = ["SYN0001", "SYN0002", "SYN0003"]
    log = CurriculumLog(ids, np.array([0.2, 0.5, 0.9]))
    table = pd.DataFrame([{"patient_id": p, "epoch": e, "weight": w} for e in range(2)
                          for p, w in zip(ids, (1.0, 1.0, float(e)))])
    fig = log.figure(table)
    fig.canvas.draw()
    inside = fig.bbox
    for artist in (fig.axes[0].title, fig.axes[0].xaxis.label, fig.axes[0].yaxis.label, fig.axes[1].yaxis.label):
        box = artist.get_window_extent()
        assert inside.x0 - 1 <= box.x0 and box.x1 <= inside.x1 + 1, artist.get_text()
        assert inside.y0 - 1 <= box.y0 and box.y1 <= inside.y1 + 1, artist.get_text()


def test_progress_is_a_bar_on_a_terminal_and_sparse_lines_in_a_log():
    import io

    from clips.progress import Progress

    lines = []
    p = Progress(100, "evaluating patients", log=lines.append, every_s=3600, stream=io.StringIO())
    for _ in range(100):
        p.step()
    assert lines[0] == "evaluating patients: 1/100 (about 0 s left)" and lines[-1].startswith(
        "evaluating patients: 100/100 (done in")
    assert len(lines) == 2  # the first, then nothing for an hour, then the end: a log is not flooded

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    term = Terminal()
    p = Progress(3, "preprocessing", log=lines.append, stream=term)
    for _ in range(3):
        p.step()
    shown = term.getvalue()
    assert shown.count("\r[") == 3 and shown.endswith("\n") and "[########################]" in shown


def test_evaluate_and_first_preprocessing_show_progress(tiny_cohort, tmp_path):
    import shutil

    masks = tmp_path / "pred"
    masks.mkdir()
    for case in sorted(p for p in tiny_cohort.iterdir() if p.is_dir()):
        shutil.copy(case / "SEG.nii.gz", masks / f"{case.name}.nii.gz")
    res = CliRunner().invoke(cli, ["evaluate", "--data-dir", str(tiny_cohort), "--pred-dir", str(masks),
                                   "--out", str(tmp_path / "ev"), "--no-mlflow"])
    assert res.exit_code == 0 and "evaluating patients: 6/6 (done in" in res.output, res.output


def test_a_training_on_a_busy_machine_tags_itself(tiny_cohort):
    """CPU-heavy processes beside a training: the run says so, once, in its log and as a tag; and every run logs
    where its time went."""
    import os
    import signal
    import subprocess
    import sys

    from clips.config import build_config
    from clips.training.timing import PHASES
    from clips.training.trainer import train

    params = {"data_dir": str(tiny_cohort), "model": "tiny", "epochs": "2", "steps_per_epoch": "2",
              "patch_size": "32", "spacing_mm": "10", "threads": "1"}
    # Two spinning processes that are not ours (started through a shell that exits: their parent is init).
    spin = "import time; t = time.time(); [0 for _ in iter(lambda: time.time() - t < 120, False)]"
    hogs = [int(subprocess.run(["sh", "-c", f'{sys.executable} -c "{spin}" >/dev/null 2>&1 & echo $!'],
                               capture_output=True, text=True).stdout) for _ in range(2)]
    try:
        lines = []
        busy = train(build_config(params), log=lines.append)
    finally:
        for pid in hogs:
            os.kill(pid, signal.SIGKILL)
    run = mlflow.get_run(busy.run_id)
    assert "other processes used" in run.data.tags.get("clips.machine_busy", "")
    assert sum(line.startswith("warning: other processes used") for line in lines) == 1  # said once
    assert {f"time/{p}_s" for p in ("data", "build", "steps", "validation", "evaluation", "logging")} <= set(
        run.data.metrics) and set(PHASES) >= {k[5:-2] for k in run.data.metrics if k.startswith("time/")} - {"total"}
    assert run.data.metrics["time/total_s"] >= run.data.metrics["time/steps_s"] > 0
    assert any(line.startswith("time ") and "steps" in line for line in lines)
