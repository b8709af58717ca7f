"""The training loop: one function, with the curriculum's hooks at the points where a curriculum acts.

Order of one run: resolve data -> start (or resume) the MLflow run -> log params,
dataset, split and difficulty -> epochs of patch training with per-epoch validation
and checkpoints -> evaluate the best model on the patients' own grids -> log tables,
figures and the model.
"""
from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import torch

from clips.config import TrainConfig, clips_home, example_cohort_dir
from clips.curricula import CurriculumContext, get_curriculum
from clips.data.cohort import Cohort, ensure_example_cohort, load_cohort
from clips.data.io import load_patient
from clips.data.preprocess import PreprocessConfig
from clips.data.sampling import PatchSampler
from clips.errors import ClipsError
from clips.losses import LossWeights, TMTVLoss
from clips.metrics import dice
from clips.metrics.cohort import CohortEvaluation
from clips.metrics.patient import COLUMNS, EvalSettings, evaluate_patient
from clips.models import SegNet
from clips.tracking import log_params_once, run_context
from clips.tracking.evaluation import log_evaluation
from clips.tracking.model import log_segmentation_model
from clips.tracking.privacy import Privacy
from clips.tracking.resilient import Spool
from clips.tracking.reap import HEARTBEAT_TAG
from clips.training import checkpoint
from clips.training.curriculum_log import CurriculumLog
from clips.training.difficulty import difficulty_table
from clips.training.step import batch_losses, fixed_patch_losses, train_step
from clips.training.inference import predict_probs, probs_to_original


@dataclass
class TrainResult:
    run_id: str
    best_val_dice: float
    best_epoch: int
    val_table: pd.DataFrame
    test_table: pd.DataFrame
    cohort_table: pd.DataFrame  # split and the cohort's own columns (e.g. the hard flags)


def resolve_data_dir(cfg: TrainConfig, log=print) -> Path:
    if cfg.data_dir:
        return Path(cfg.data_dir).expanduser()
    ex = cfg.example
    return ensure_example_cohort(example_cohort_dir(cfg), ex.patients, ex.spacing_mm, ex.seed, log=log)


def train(cfg: TrainConfig, log=print, run_id: str | None = None, on_validation=None) -> TrainResult:
    """Train, evaluate and log one run.

    ``run_id`` attaches to an existing run (a tuning trial). ``on_validation(epoch,
    evaluate_val, cohort_table)`` is called after each validation; ``evaluate_val()``
    returns the full per-patient evaluation of the validation set, computed from the
    validation pass's own predictions (tuning reports and prunes on it).
    """
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    data_dir = resolve_data_dir(cfg, log)
    split_seed = cfg.split_seed if cfg.split_seed >= 0 else cfg.seed
    cohort = load_cohort(data_dir, clips_home() / "cache", PreprocessConfig(cfg.spacing_mm), split_seed,
                         cfg.val_fraction, cfg.test_fraction, cfg.skip_invalid, log=log)
    train_ids, val_ids, test_ids = (cohort.ids(s) for s in ("train", "val", "test"))
    log(f"cohort {data_dir}: {len(train_ids)} train, {len(val_ids)} val, {len(test_ids)} test patients")
    curriculum_cls = get_curriculum(cfg.curriculum)
    options = curriculum_cls.parse_options(cfg.curriculum_options)

    with run_context(cfg.resume, run_id) as run:
        run_id = run.info.run_id
        workdir = clips_home() / "runs" / run_id
        workdir.mkdir(parents=True, exist_ok=True)
        privacy = Privacy(cfg.privacy)
        spool = Spool(run_id, workdir, log)
        spool.flush()  # a resumed run first uploads what an outage left behind
        privacy.ids(cohort.table["patient_id"])
        params = {f"cfg.{k}": v for k, v in cfg.as_params().items() if not k.startswith("curriculum_options.")}
        params |= {f"curriculum.{k}": str(v) for k, v in vars(options).items()}
        log_params_once(params | {"cfg.data_dir_resolved": str(data_dir)})
        mlflow.set_tags({"clips.curriculum": cfg.curriculum, "clips.paper": curriculum_cls.paper,
                         "clips.profile": cfg.profile, "clips.cohort_digest": cohort.digest})

        torch.manual_seed(cfg.seed)
        device = resolve_device(cfg.device)
        net = SegNet(cfg.model)
        if cfg.init_weights:
            _init_weights(net, cfg.init_weights)
        net.to(device)
        loss_fn = TMTVLoss(LossWeights(cfg.loss_alpha, cfg.loss_beta, cfg.loss_lambda, cfg.ms_eta))
        sampler = PatchSampler([cohort.cases[p] for p in train_ids], cfg.patch_size, cfg.pos_ratio)
        difficulty, dtable = difficulty_table(cohort, train_ids, cfg, options, loss_fn, log)

        model_ref: dict = {}  # the model being trained, for the curriculum's scoring closures
        ctx = CurriculumContext(
            train_ids, cfg.epochs, cfg.steps_per_epoch, cfg.seed, difficulty,
            score_patients=lambda: fixed_patch_losses(model_ref["m"], sampler, loss_fn, cfg.batch_size),
            batch_losses=lambda x, y: batch_losses(model_ref["m"], loss_fn, x, y),
        )
        curriculum = curriculum_cls(ctx, options)
        model = model_ref["m"] = curriculum.wrap_model(net)
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs * cfg.steps_per_epoch)
        rng = np.random.default_rng(cfg.seed)
        state = {"epoch": -1, "samples_seen": 0, "best_val_dice": -1.0, "best_epoch": -1}
        clog = CurriculumLog(train_ids, difficulty)

        resumed = checkpoint.find_last(workdir / "checkpoints", run_id) if cfg.resume else None
        if cfg.resume and resumed is None:
            raise ClipsError(f"run {run_id} has no checkpoint to resume from")
        if resumed:
            model.load_state_dict(resumed["model"])
            opt.load_state_dict(resumed["optimizer"])
            sched.load_state_dict(resumed["scheduler"])
            curriculum.load_state_dict(resumed["curriculum"])
            rng.bit_generator.state = resumed["numpy_rng"]
            torch.set_rng_state(resumed["torch_rng"])
            state = resumed["state"]
            clog.rows = resumed.get("curriculum_rows", [])
            _log_pending_metrics(run_id, state["epoch"], resumed.get("metrics"))
            log(f"resuming run {run_id} after epoch {state['epoch']}")
        else:
            _log_data(cohort, workdir, privacy)
            mlflow.log_table(privacy.table(dtable), "tables/difficulty.json")

        for epoch in range(state["epoch"] + 1, cfg.epochs):
            t0 = time.perf_counter()
            weights = np.asarray(curriculum.epoch_weights(epoch), float)
            if weights.shape != (len(train_ids),) or not np.all(weights >= 0) or weights.sum() <= 0:
                raise ClipsError(f"curriculum {cfg.curriculum} gave invalid epoch weights at epoch {epoch}")
            model.train()
            sums: dict[str, float] = {}
            loss_sum, loss_n = np.zeros(len(train_ids)), np.zeros(len(train_ids))
            for _ in range(cfg.steps_per_epoch):
                idx, terms = train_step(model, curriculum, sampler, loss_fn, opt, rng, weights, cfg.batch_size, device)
                sched.step()
                per_sample = terms["total"].detach()
                state["samples_seen"] += len(idx)
                np.add.at(loss_sum, idx, per_sample.cpu().numpy())
                np.add.at(loss_n, idx, 1)
                for k, v in terms.items():
                    sums[k] = sums.get(k, 0.0) + float(v.detach().mean())
            curriculum.end_epoch(epoch)
            with np.errstate(invalid="ignore", divide="ignore"):
                epoch_losses = loss_sum / loss_n
            measured = curriculum.patient_losses
            clog.record(epoch, curriculum.patient_weights(weights), measured if measured is not None else epoch_losses)
            metrics = {f"train_loss{'' if k == 'total' else '_' + k}": v / cfg.steps_per_epoch for k, v in sums.items()}
            metrics |= {"lr": opt.param_groups[0]["lr"], "samples_seen": state["samples_seen"],
                        "fraction_in_play": float(np.mean(weights > 0))}
            metrics |= {f"curriculum.{k}": float(v) for k, v in curriculum.log_state().items()}
            is_last = epoch == cfg.epochs - 1
            if (epoch + 1) % cfg.val_every == 0 or is_last:
                vd, val_now = _validate(net, cohort, val_ids, cfg, full=on_validation is not None)
                metrics["val_dice"] = vd
                if vd > state["best_val_dice"]:
                    state["best_val_dice"], state["best_epoch"] = vd, epoch
                    checkpoint.save({"model": net.state_dict(), "preset": cfg.model, "epoch": epoch, "val_dice": vd},
                                    workdir / "checkpoints" / "best.pt")
                    spool.log_artifact(workdir / "checkpoints" / "best.pt", checkpoint.ARTIFACT_DIR)
            metrics["epoch_time_s"] = time.perf_counter() - t0
            state["epoch"] = epoch
            # Checkpoint first, with this epoch's metrics: a process killed in between logs
            # them on resume, so the history never has a duplicate or a missing epoch.
            checkpoint.save({
                "model": model.state_dict(), "preset": cfg.model, "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(), "curriculum": curriculum.state_dict(),
                "numpy_rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(), "state": dict(state),
                "config": cfg.as_params(), "curriculum_rows": clog.rows, "metrics": metrics,
            }, workdir / "checkpoints" / "last.pt")
            spool.log_metrics(metrics, step=epoch)
            spool.set_tag(HEARTBEAT_TAG, f"{time.time():.0f}")  # `clips runs reap` reads it
            spool.log_artifact(workdir / "checkpoints" / "last.pt", checkpoint.ARTIFACT_DIR)
            if on_validation is not None and "val_dice" in metrics:
                on_validation(epoch, lambda: val_now, cohort.table)
            if (epoch + 1) % cfg.table_every == 0 and not is_last:
                try:
                    clog.log(privacy)
                except Exception:  # noqa: BLE001 - server away: the table is logged again at the end
                    pass
            log(f"epoch {epoch + 1}/{cfg.epochs}: loss {metrics['train_loss']:.4f}"
                + (f", val Dice {metrics['val_dice']:.4f}" if "val_dice" in metrics else "")
                + f", {metrics['fraction_in_play']:.0%} of patients in play ({metrics['epoch_time_s']:.1f} s)")

        curriculum.release()
        if not spool.wait_and_flush(cfg.outage_wait_min):
            raise ClipsError(
                f"the tracking server {mlflow.get_tracking_uri()} has been unreachable for over "
                f"{cfg.outage_wait_min:g} min; training is done and checkpointed, and {len(spool.pending)} logging "
                f"operation(s) are kept in {spool.path}. When the server is back, run "
                f"'clips train --resume {run_id}' with the same parameters to upload them and finish the run.")
        clog.log(privacy)
        best = workdir / "checkpoints" / "best.pt"
        if best.exists():
            net.load_state_dict(checkpoint.load(best)["model"])
        val_eval = _evaluate(net, cohort, val_ids, cfg)
        test_eval = _evaluate(net, cohort, test_ids, cfg)
        for name, result in (("val", val_eval), ("test", test_eval)):
            if len(result.table) or result.errors:
                log_evaluation(result, name, privacy=privacy)
        mlflow.log_metric("best_epoch", state["best_epoch"])
        privacy.save_mapping(workdir)
        mlflow.set_tag("clips.privacy", "pseudonymised ids" if privacy.active else "real ids")
        log_segmentation_model(net, {"spacing_mm": list(cfg.spacing_mm), "patch_size": list(cfg.patch_size),
                                     "model": cfg.model, "sw_overlap": cfg.sw_overlap})
        return TrainResult(run_id, state["best_val_dice"], state["best_epoch"], val_eval.table, test_eval.table,
                           cohort.table)


def _log_pending_metrics(run_id: str, epoch: int, metrics: dict | None) -> None:
    """Log the checkpointed epoch's metrics if the killed process did not get to it."""
    if not metrics or epoch < 0:
        return
    logged = {m.step for m in mlflow.MlflowClient().get_metric_history(run_id, "train_loss")}
    if epoch not in logged:
        mlflow.log_metrics(metrics, step=epoch)


def resolve_device(name: str) -> torch.device:
    """``auto``: the GPU when there is one. A named device that is missing is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ClipsError(f"device {name!r} asked for, but torch sees no GPU on this machine")
    return torch.device(name)


def _device_of(net) -> torch.device:
    return next(net.parameters()).device


def _init_weights(net: SegNet, source: str) -> None:
    sd = checkpoint.load_weights(source)
    try:
        net.load_state_dict(sd)
    except RuntimeError as exc:
        raise ClipsError(f"init_weights {source} does not fit model preset {net.preset!r}: "
                         f"{str(exc).splitlines()[0]}") from None


def _log_data(cohort: Cohort, workdir: Path, privacy: Privacy) -> None:
    table = privacy.table(cohort.table)
    split_file = workdir / "split.csv"
    table.to_csv(split_file, index=False)
    mlflow.log_artifact(str(split_file), "data")
    if cohort.skipped:
        privacy.ids([p.patient_id for p in cohort.skipped])
        (workdir / "skipped.json").write_text(json.dumps([privacy.text(str(p)) for p in cohort.skipped], indent=1))
        mlflow.log_artifact(str(workdir / "skipped.json"), "data")
    with warnings.catch_warnings():  # MLflow's source-type guess and integer-column hints are noise here
        warnings.simplefilter("ignore", UserWarning)
        ds = mlflow.data.from_pandas(table, source=str(cohort.root), name="cohort", digest=cohort.digest)
        mlflow.log_input(ds, context="training")


def _validate(net, cohort: Cohort, ids: list[str], cfg: TrainConfig, full: bool = False):
    """(mean Dice on the preprocessed grid, fast, for model selection; NaN cases skipped,
    and with ``full`` the whole suite on the patients' own grids from the same predictions)."""
    scores, rows, settings = [], [], EvalSettings()
    for pid in ids:
        case = cohort.cases[pid]
        probs = predict_probs(net, case.image, cfg.patch_size, cfg.sw_overlap, cfg.sw_batch_size, _device_of(net))
        scores.append(dice(np.asarray(case.label), probs >= 0.5))
        if full:
            rows.append(_patient_row(cohort, pid, probs, settings))
    scores = [s for s in scores if not np.isnan(s)]
    evaluation = CohortEvaluation(pd.DataFrame(rows, columns=COLUMNS), [], settings) if full else None
    return (float(np.mean(scores)) if scores else float("nan")), evaluation


def _evaluate(net, cohort: Cohort, ids: list[str], cfg: TrainConfig) -> CohortEvaluation:
    """The full per-patient suite on each patient's own grid (docs/metrics.md)."""
    settings = EvalSettings()
    rows = [_patient_row(cohort, pid, predict_probs(net, cohort.cases[pid].image, cfg.patch_size, cfg.sw_overlap,
                                                     cfg.sw_batch_size, _device_of(net)), settings) for pid in ids]
    return CohortEvaluation(pd.DataFrame(rows, columns=COLUMNS), [], settings)


def _patient_row(cohort: Cohort, pid: str, probs: np.ndarray, settings: EvalSettings) -> dict:
    vols = load_patient(cohort.files[pid].without_ct())
    return evaluate_patient(pid, vols.seg, probs_to_original(probs, vols), vols.pet, vols.affine, settings)
