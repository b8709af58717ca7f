"""Screenshots of the real MLflow UI on a small study made by today's code, for docs/ui.md (so the doc stays true
when the UI or the report changes: run this again after an MLflow upgrade or a change of the report).

    pip install -e '.[docs]'           # Playwright, which drives the browser
    apt-get install chromium           # Debian's Chromium: Playwright downloads none
    python docs/ui_screenshots.py [--store sqlite:///mlflow.db] [--out docs/img]

Without ``--store`` it first runs a small study (``none``, ``progressive_patch`` and its control ``patch_mix``, 3
seeds, 3 folds, the declared contrast progressive_patch:none, tiny model, 12 generated patients; a few minutes on
2 CPU cores) and a 4-trial tuning study in a temporary store. Then it serves the store with ``mlflow ui`` and works the
pages as a user would, in headless Chromium: the assistant panel closed, the study's children filtered, grouped by
arm (the ``clips.curriculum`` tag) with their test metrics as columns, the same grouping in the chart view, the
parent run, its report, the tuning trials (their parent expanded) and Optuna's figure.

REPORT_SECTIONS are the report's sections that docs/ui.md names and its picture shows; tests/test_study.py checks
that a study's report still has each of them and that docs/ui.md still names each, so a renamed or dropped section
fails a test instead of leaving a stale picture.
"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WORKFLOW = "machine_learning"
TINY = ["-P", "model=tiny", "-P", "epochs=4", "-P", "steps_per_epoch=3", "-P", "patch_size=32",
        "-P", "spacing_mm=10", "-P", "example.patients=12", "-P", "example.spacing_mm=10"]
REPORT_SECTIONS = ("Figures of merit", "Contrasts, paired per patient and run", "Calibration, power, difficulty")
ARM_TAG = "clips.curriculum"  # what the runs are grouped by: every kind of arm's child carries it
COLUMNS = ("test_dice_mean", "test_tmtv_abs_rel_error_mean")  # the children's metrics shown beside them
HIDDEN = ("Dataset", "Source", "Models")  # the UI's default columns that would push the metrics off the picture
SIZE = {"width": 1500, "height": 1150}


def clips(args: list[str], env: dict, cwd: Path) -> None:
    # run in the temporary folder: a SQLite store keeps its artifacts in ./mlruns of the process that makes them
    subprocess.run([sys.executable, "-m", "clips", *args], cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_store(env: dict, cwd: Path) -> None:
    clips(["study", "--curricula", "none,progressive_patch,patch_mix", "--seeds", "3", "--folds", "3", "--contrasts",
           "progressive_patch:none", "--study-name", "demo-study", "--selection", "last", *TINY], env, cwd)
    clips(["tune", "--curriculum", "smoothing", "--n-trials", "4", "--pruner", "none", "--study-name",
           "demo-tune", *TINY], env, cwd)


def serve(store: str, env: dict, cwd: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", store, "--host",
                               "127.0.0.1", "--port", str(port)], env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    for _ in range(120):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
            return server, port
        except OSError:
            time.sleep(1)
    server.terminate()
    sys.exit("mlflow ui did not answer in 120 s")


class Pages:
    """One browser tab through the UI; the UI keeps its state (the closed assistant, the grouping) in the tab."""

    def __init__(self, page, base: str, out: Path):
        self.page, self.base, self.out = page, base, out

    def open(self, path: str, wait_for: str) -> None:
        self.page.goto(f"{self.base}{path}{'&' if '?' in path else '?'}workflowType={WORKFLOW}")
        self.page.get_by_text(wait_for).first.wait_for(timeout=60_000)
        close = self.page.get_by_role("button", name="Close")  # MLflow's assistant panel, open on a first visit
        if close.count():
            close.first.click()
        self.page.wait_for_timeout(1500)

    def shoot(self, name: str) -> None:
        self.page.screenshot(path=str(self.out / name))
        print(f"wrote {self.out / name}")

    def filter_runs(self, expression: str) -> None:
        box = self.page.get_by_placeholder("metrics.rmse < 1 and params.model = \"tree\"")
        box.fill(expression)
        box.press("Enter")
        self.page.wait_for_timeout(1500)

    def group_by_tag(self, tag: str) -> None:
        self.page.get_by_role("button", name="Group by").click()
        self.page.get_by_text(tag, exact=True).click()
        self.page.keyboard.press("Escape")
        self.page.wait_for_timeout(1000)

    def columns(self, show: tuple[str, ...], hide: tuple[str, ...]) -> None:
        self.page.get_by_role("button", name="Columns").click()
        for name in hide:
            self.page.get_by_text(name, exact=True).last.click()
        search = self.page.get_by_placeholder("Search columns")
        for name in show:
            search.fill(name)
            self.page.wait_for_timeout(500)
            self.page.get_by_text(name, exact=True).last.click()
        self.page.keyboard.press("Escape")
        self.page.wait_for_timeout(1000)

    def expand(self, run_name: str) -> None:
        """Open a parent's row (the UI lists parents collapsed): its children's rows, lines and points appear."""
        self.page.get_by_role("row").filter(has_text=run_name).first.get_by_role("button").first.click()
        self.page.wait_for_timeout(1500)

    def chart_view(self, charts: str = "") -> None:
        """The chart view of the runs listed; ``charts``: only the charts whose metric names contain it."""
        # the view switch above the table (list, chart, artifacts): radio inputs styled as buttons
        self.page.locator("input[name='runs-view-mode'][value='CHART']").dispatch_event("click")
        self.page.wait_for_timeout(3000)
        # the charts show the first 10 runs unless told otherwise: a study has more
        self.page.get_by_role("button", name="Toggle visibility of runs").click()
        self.page.get_by_text("Show all runs", exact=True).click()
        self.page.wait_for_timeout(2000)
        if charts:
            self.page.get_by_placeholder("Search metric charts").fill(charts)
            self.page.wait_for_timeout(2000)


def photograph(chromium: str, base: str, out: Path, parent: str, tune: str) -> None:
    from playwright.sync_api import sync_playwright

    children = "tags.`clips.role` = 'study_child'"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        ui = Pages(browser.new_context(viewport=SIZE).new_page(), base, out)
        ui.open("/runs", "demo-study")
        ui.filter_runs(children)
        ui.group_by_tag(ARM_TAG)
        ui.columns(COLUMNS, HIDDEN)
        ui.shoot("ui_runs.png")
        ui.chart_view("test_dice")
        ui.shoot("ui_charts.png")
        ui.open(f"/runs/{parent}", "demo-study")
        ui.shoot("ui_study_parent.png")
        ui.open(f"/runs/{parent}/artifacts/comparison/report.html", "report.html")
        ui.page.wait_for_timeout(3000)
        ui.shoot("ui_study_report.png")
        ui = Pages(browser.new_context(viewport=SIZE).new_page(), base, out)  # a fresh tab: no grouping
        ui.open("/runs", "matching runs")
        ui.filter_runs("tags.`clips.role` = 'tune_trial'")
        ui.expand("demo-tune")
        ui.chart_view("dice")
        ui.shoot("ui_tune_trials.png")
        ui.open(f"/runs/{tune}/artifacts/figures/tune_parallel_coordinate.png", "tune_parallel_coordinate.png")
        ui.shoot("ui_tune_parallel.png")
        browser.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", default="", help="tracking store to photograph (default: a fresh demo study)")
    ap.add_argument("--out", default=str(REPO / "docs" / "img"))
    args = ap.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        sys.exit("needs Chromium: apt-get install chromium")
    try:
        import playwright  # noqa: F401 - checked here, used in photograph()
    except ImportError:
        sys.exit("needs Playwright: pip install -e '.[docs]'")
    tmp = Path(tempfile.mkdtemp(prefix="clips-ui-"))
    store = args.store or f"sqlite:///{tmp / 'mlflow.db'}"
    env = dict(os.environ, MLFLOW_TRACKING_URI=store, CLIPS_HOME=str(tmp / "home"),
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    env.pop("MLFLOW_RUN_ID", None)
    if not args.store:
        make_store(env, tmp)
    import mlflow

    mlflow.set_tracking_uri(store)
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name("clips")
    parent = client.search_runs([exp.experiment_id], "tags.`clips.role` = 'study_parent'")[0]
    tune = client.search_runs([exp.experiment_id], "tags.`clips.role` = 'tune_parent'")[0]
    server, port = serve(store, env, tmp)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        photograph(chromium, f"http://127.0.0.1:{port}/#/experiments/{exp.experiment_id}", out,
                   parent.info.run_id, tune.info.run_id)
    finally:
        server.terminate()
        server.wait()
        if not args.store:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
