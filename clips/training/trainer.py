"""The training loop in named phases, with the curriculum's hooks where a curriculum acts.

One run: load the data -> start (or attach to, or resume) the MLflow run -> :func:`build`
the training -> :func:`restore` a checkpoint, or log the run's inputs -> per epoch
:func:`run_epoch` (its batches from :func:`begin_epoch`), :func:`validate`, :func:`save_epoch` -> :func:`finish`:
evaluate the best model on the patients' own grids, log tables, figures and the model. With loader workers (a GPU
training) the next epoch begins before this one's validation (:func:`begin_early`).
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import torch

from clips.config import TrainConfig
from clips.curricula import Curriculum, get_curriculum
from clips.curricula.difficulty import feature_table, with_scores
from clips.data.augment import Augmentation
from clips.data.cohort import Cohort
from clips.data.io import load_patient
from clips.data.loader import PatchDataset, PatchLoader, default_workers
from clips.data.sampling import PatchSampler
from clips.data.splits import cross_validated
from clips.data.synth.version import GENERATOR_VERSION
from clips.errors import ClipsError, ConfigError, NotResumable, Preempted
from clips.inference.sliding_window import predict_probs, probs_to_original, resolve_device
from clips.losses import LossWeights, TMTVLoss
from clips.metrics.cohort import CohortEvaluation, evaluate_predictions
from clips.models import RELEASED_PRESET, build_network
from clips.paths import DEFAULT_PROFILE, clips_home
from clips.scaling import preemption
from clips.tracking import schema
from clips.tracking.cohort import log_cohort
from clips.tracking.evaluation import log_evaluation
from clips.tracking.model import log_segmentation_model
from clips.tracking.privacy import Privacy
from clips.tracking.reap import heartbeat_now
from clips.tracking.resilient import Spool
from clips.tracking.runs import log_params_once, run_context
from clips.training import checkpoint, failpoints
from clips.training.checkpoint import LoopState
from clips.training.cohort import load_data
from clips.training.collapse import collapse_epoch
from clips.training.curriculum_log import CurriculumLog
from clips.training.step import Schedule, build_curriculum, optimise_batches, planned_batches
from clips.training.system import BusyWatch, SystemSampler
from clips.training.teacher_scoring import difficulty_table
from clips.training.timing import PhaseTimer


@dataclass
class TrainResult:
    run_id: str
    best_val_dice: float
    best_epoch: int
    val_table: pd.DataFrame
    test_table: pd.DataFrame
    cohort_table: pd.DataFrame  # split and the cohort's own columns (e.g. the hard flags)


@dataclass
class Training:
    """One training in progress: what the phases share."""

    cfg: TrainConfig
    cohort: Cohort
    run_id: str
    workdir: Path
    privacy: Privacy
    spool: Spool
    device: torch.device
    model: torch.nn.Module  # the network as the curriculum wraps it (the same module as the logged one)
    loss_fn: TMTVLoss
    sampler: PatchSampler
    patches: PatchDataset  # crops and augments the planned patches (in loader workers)
    curriculum: Curriculum
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    rng: np.random.Generator
    clog: CurriculumLog
    difficulty: pd.DataFrame  # the training patients' features and scores (tables/difficulty.json)
    cohort_scores: pd.DataFrame  # every patient's cohort score (tables/cohort_difficulty.json)
    log: object = print
    state: LoopState = field(default_factory=LoopState)
    timer: PhaseTimer = field(default_factory=PhaseTimer)  # where the run's time goes (time/* metrics)
    ema: torch.optim.swa_utils.AveragedModel | None = None  # the weights' moving average, with ema_decay > 0
    loader: PatchLoader | None = None  # the persistent loader, made by the first epoch
    compiled: torch.nn.Module | None = None  # the torch.compile'd forward pass, with compile=true
    # what a run resumed after the last finished epoch starts from (generators, curriculum), taken before the next
    # epoch began early; None: the live state is that (checkpoint.save_last)
    resume_point: dict | None = None

    def delivered(self) -> torch.nn.Module:
        """The network validation judges and the run delivers: the moving average when there is one."""
        return self.ema.module if self.ema is not None else self.model

    def ids(self, split: str) -> list[str]:
        return self.cohort.ids(split)

    @property
    def checkpoints(self) -> Path:
        return self.workdir / schema.CHECKPOINTS


def train(cfg: TrainConfig, log=print, run_id: str | None = None, on_validation=None) -> TrainResult:
    """Train, evaluate and log one run.

    ``run_id`` attaches to an existing run (a tuning trial). ``on_validation(epoch,
    evaluate_val, cohort_table)`` is called after each validation; ``evaluate_val()``
    returns the full per-patient evaluation of the validation set, computed from the
    validation pass's own predictions (tuning reports and prunes on it).
    """
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    timer = PhaseTimer()
    busy = BusyWatch(log)  # before any work of ours: what else is running now
    with timer("data"):
        data_dir, cohort = load_data(cfg, log)
    with run_context(cfg.resume, run_id) as run:
        with timer("build"):
            training = build(cfg, cohort, run.info.run_id, log)
        training.timer = timer
        with timer("logging"):
            log_run_parameters(training, data_dir)
            busy.tag_if_busy(training.spool.set_tag)
            if not restore(training):
                log_inputs(training)
        first = training.state.epoch + 1
        began = time.perf_counter()
        system = SystemSampler(training.device)
        begun = None
        for epoch in range(first, cfg.epochs):
            started = time.perf_counter()
            with timer("steps"), _leaving(training):
                metrics = run_epoch(training, epoch, begun)
                begun = begin_early(training, epoch + 1)
            with timer("validation"):
                val_eval = validate(training, epoch, metrics)
            metrics["epoch_time_s"] = time.perf_counter() - started
            metrics |= system.sample()
            busy.note_if_busy(epoch, metrics.get("system/other_cores"), training.spool.set_tag)
            with timer("checkpoint"):
                save_epoch(training, epoch, metrics)
            failpoints.reached("epoch", epoch)
            if on_validation is not None and val_eval is not None:
                on_validation(epoch, lambda v=val_eval: v, cohort.table)
            per_epoch = (time.perf_counter() - began) / (epoch - first + 1)
            log(_epoch_line(epoch, cfg.epochs, metrics, per_epoch * (cfg.epochs - epoch - 1)))
        return finish(training)


@contextlib.contextmanager
def _leaving(training: Training):
    """A worker told to leave (clips/scaling/preemption.py) mid-epoch: upload what is pending (the last epoch's
    checkpoint first of all) and say on the run where it stopped; the run ends KILLED, resumable."""
    try:
        yield
    except Preempted as exc:
        training.spool.set_tag(schema.FAILURE, f"pre-empted: {exc}; resumable from its last checkpoint")
        training.spool.wait_and_flush(1.0)
        training.log(f"{exc}: leaving; the run resumes from its last checkpoint (after epoch "
                     f"{training.state.epoch + 1})")
        raise


# ----------------------------------------------------------------------------- phases
def build(cfg: TrainConfig, cohort: Cohort, run_id: str, log=print) -> Training:
    """Network, loss, sampler, difficulty, curriculum, optimiser and schedule of a fresh training."""
    curriculum_cls = get_curriculum(cfg.curriculum)
    options = curriculum_cls.parse_options(cfg.curriculum_options)
    workdir = clips_home() / "runs" / run_id
    workdir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    net = build_network(cfg.model, cfg.finetune, cfg.spacing_mm)
    if cfg.init_weights:
        _init_weights(net, cfg.init_weights)
    device = resolve_device(cfg.device)
    net.to(device)
    if device.type == "cuda":  # the layout and algorithm choice cuDNN is fastest with for 3D convolutions
        net.to(memory_format=torch.channels_last_3d)
        torch.backends.cudnn.benchmark = True
    train_ids = cohort.ids("train")
    loss_fn = TMTVLoss(LossWeights(cfg.loss_alpha, cfg.loss_beta, cfg.loss_lambda, cfg.ms_eta, cfg.batch_dice))
    sampler = PatchSampler([cohort.cases[p] for p in train_ids], cfg.patch_size, cfg.pos_ratio, cfg.fg_sampling)
    every = list(cohort.table["patient_id"])
    features = feature_table(every, [cohort.cases[p] for p in every], cfg.spacing_mm)  # once, for both tables
    difficulty, dtable = difficulty_table(cohort, train_ids, cfg, options, loss_fn, log, features)
    curriculum, model = build_curriculum(curriculum_cls, options, Schedule(train_ids, cfg.epochs, cfg.steps_per_epoch,
                                                                           cfg.seed, cfg.batch_size),
                                         difficulty, sampler, loss_fn, net)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = _schedule(optimizer, cfg)
    spool = Spool(run_id, workdir, log)
    patches = PatchDataset(sampler, Augmentation(cfg.augmentation, cfg.spacing_mm),
                           on_device=cfg.augment_on == "device")
    ema = None
    if cfg.ema_decay > 0:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay))
    return Training(cfg, cohort, run_id, workdir, Privacy(cfg.privacy), spool, device, model, loss_fn, sampler,
                    patches, curriculum, optimizer, scheduler, np.random.default_rng(cfg.seed),
                    CurriculumLog(train_ids, difficulty), dtable, with_scores(features)[["patient_id", "score_cohort"]],
                    log, ema=ema)


def log_run_parameters(training: Training, data_dir: Path) -> None:
    """Parameters and tags; on a resumed run, a check that none changed."""
    training.spool.flush()  # a resumed run first uploads what an outage left behind
    training.privacy.ids(training.cohort.table["patient_id"])
    cfg = training.cfg
    try:
        log_params_once(training.privacy.params(run_parameters(cfg, vars(training.curriculum.opt), data_dir)),
                        may_differ=tuple(schema.CFG + k for k in checkpoint.NOT_CONFIG))
    except ConfigError as exc:
        if cfg.resume:  # another recipe cannot continue this run's training
            raise NotResumable(str(exc)) from None
        raise
    mlflow.set_tags({"mlflow.note.content": run_description(training, data_dir), schema.CURRICULUM: cfg.curriculum,
                     schema.PAPER: training.curriculum.paper, schema.PROFILE: cfg.profile,
                     schema.COHORT_DIGEST: training.cohort.digest})
    if schema.ROLE not in mlflow.get_run(training.run_id).data.tags:  # study children and trials are named already
        mlflow.set_tag("mlflow.runName", f"{cfg.curriculum} · {cfg.profile or DEFAULT_PROFILE} · seed {cfg.seed}")


def run_parameters(cfg: TrainConfig, curriculum_options: dict, data_dir: Path) -> dict[str, str]:
    """What a run's parameters show: each value once, none empty, the example cohort's settings only when the
    run trains on it, and the data folder as used (resolved) rather than as typed."""
    params = {schema.CFG + k: v for k, v in cfg.as_params().items()
              if not k.startswith("curriculum_options.") and not (cfg.data_dir and k.startswith("example."))
              and k != "data_dir" and v != ""}
    params[schema.DATA_DIR_PARAM] = str(data_dir)
    return params | {f"curriculum.{k}": str(v) for k, v in curriculum_options.items() if str(v) != ""}


def run_description(training: Training, data_dir: Path) -> str:
    """The run's description in the UI (mlflow.note.content): the curriculum in one sentence with its paper, the
    recipe, the data."""
    cfg, cohort = training.cfg, training.cohort
    doc = (type(training.curriculum).__doc__ or "").strip().splitlines()
    paper = training.curriculum.paper
    what = f"**{cfg.curriculum}**: {doc[0] if doc else ''}" + (f" ({paper})" if paper else "")
    patch, spacing = "x".join(map(str, cfg.patch_size)), "x".join(f"{v:g}" for v in cfg.spacing_mm)
    recipe = (f"**Recipe** (profile {cfg.profile or DEFAULT_PROFILE}): {cfg.epochs} epochs x {cfg.steps_per_epoch} "
              "steps of "
              f"{cfg.batch_size} patches of {patch} voxels at {spacing} mm, {cfg.model} U-Net, "
              f"lr {cfg.lr:g}, augmentation {cfg.augmentation}, seed {cfg.seed}.")
    if cfg.data_dir:
        source = f"`{training.privacy.path(data_dir)}`"
    else:
        ex = cfg.example
        source = (f"the generated example cohort ({GENERATOR_VERSION} generator, {ex.patients} patients, "
                  f"seed {ex.seed})")
    split = ", ".join(f"{len(cohort.ids(s))} {s}" for s in ("train", "val", "test"))
    fold = f", test fold {cfg.fold} of {cfg.folds}" if cross_validated(cfg.folds) else ""
    data = f"**Data**: {source}: {split} patients{fold}; cohort digest {cohort.digest}."
    return "\n\n".join((what, recipe, data))


def restore(training: Training) -> bool:
    """Continue from the run's last checkpoint when resuming; False for a fresh run."""
    if not training.cfg.resume:
        return False
    config = training.privacy.params(training.cfg.as_params())
    saved = checkpoint.find_last(training.checkpoints, training.run_id, config, training.log)
    if saved is None:
        raise NotResumable(f"run {training.run_id} has no usable checkpoint to resume from (see above); start it "
                           "afresh without --resume")
    metrics = checkpoint.restore_last(saved, training)
    _log_pending_metrics(training.run_id, training.state.epoch, metrics)
    tags = mlflow.get_run(training.run_id).data.tags
    times = int(tags.get(schema.RESUMES, "0")) + 1
    mlflow.set_tags({schema.RESUMED_AFTER: str(training.state.epoch), schema.RESUMES: str(times)})
    if schema.FAILURE in tags:  # a run that lives again is not failed: its last failure is kept as history
        mlflow.set_tag(schema.EARLIER_FAILURE, tags[schema.FAILURE])
        mlflow.MlflowClient().delete_tag(training.run_id, schema.FAILURE)
    training.log(f"resuming run {training.run_id} after epoch {training.state.epoch}")
    return True


def log_inputs(training: Training) -> None:
    """The cohort as an MLflow dataset, the split, skipped patients, the difficulty table of the training
    patients, and the cohort scores of every patient (a study correlates them with the test error)."""
    log_cohort(training.cohort, training.workdir, training.privacy)
    mlflow.log_table(training.privacy.table(training.difficulty), schema.DIFFICULTY)
    mlflow.log_table(training.privacy.table(training.cohort_scores), schema.COHORT_DIFFICULTY)


@dataclass
class EpochStart:
    """An epoch begun: the curriculum's weights for it (its sample shape is set on the sampler and carried by each
    planned patch), and its batches, which the loader's workers prepare from the moment it began."""

    weights: np.ndarray
    batches: object  # an iterator of (indices, x, y): clips.training.step.planned_batches


def begin_epoch(training: Training, epoch: int) -> EpochStart:
    """The curriculum's weights and sample shape for ``epoch``, and its batches set going."""
    cfg, cur = training.cfg, training.curriculum
    n = len(training.ids("train"))
    weights = np.asarray(cur.epoch_weights(epoch), float)
    if weights.shape != (n,) or not np.all(weights >= 0) or weights.sum() <= 0:
        raise ClipsError(f"curriculum {cfg.curriculum} gave invalid epoch weights at epoch {epoch}")
    training.sampler.patch, batch_size = cur.sample_shape(epoch, cfg.patch_size, cfg.batch_size)
    if training.loader is None:
        workers = default_workers(training.device) if cfg.workers < 0 else cfg.workers
        training.loader = PatchLoader(training.patches, workers, training.device)
    batches = planned_batches(cur, training.patches, training.rng, weights, batch_size, cfg.steps_per_epoch,
                              training.loader)
    return EpochStart(weights, batches)


def begin_early(training: Training, epoch: int) -> EpochStart | None:
    """``epoch`` begun before the previous one is validated and checkpointed, so that the loader's workers prepare
    its first batches while the network is validated: with workers only (a GPU training; on the CPU the step
    computes on every core and there are none, and nothing changes). Beginning draws from the training's generator
    (the plan) and may move the curriculum's state, so the state a run resumed from this checkpoint must start
    from is taken first (:attr:`Training.resume_point`); that run begins ``epoch`` itself, from there, and plans
    what this one planned. Nothing a curriculum plans with comes from validation."""
    training.resume_point = None
    if epoch >= training.cfg.epochs or not training.loader.workers:
        return None
    training.resume_point = checkpoint.resume_point(training)
    return begin_epoch(training, epoch)


def run_epoch(training: Training, epoch: int, begun: EpochStart | None = None) -> dict:
    """The epoch's optimisation steps with the curriculum's hooks (its batches ``begun`` early, or begun now);
    returns the epoch's metrics."""
    cfg, cur = training.cfg, training.curriculum
    n = len(training.ids("train"))
    if begun is None:
        begun = begin_epoch(training, epoch)
    weights = begun.weights
    training.model.train()
    # The epoch's losses add up on the device, in float64 (the sums a NumPy accumulation gave), and are read once
    # at its end: no host synchronisation per step.
    sums: dict[str, torch.Tensor] = {}
    loss_sum = torch.zeros(n, dtype=torch.float64, device=training.device)
    loss_n = np.zeros(n)
    forward = _compiled(training) if cfg.compile else training.model
    steps = optimise_batches(forward, cur, begun.batches, training.loss_fn, training.optimizer, training.device,
                             amp=cfg.amp, grad_clip=cfg.grad_clip)
    for step, (idx, terms) in enumerate(steps):
        failpoints.reached("step", epoch, step)
        training.scheduler.step()
        if training.ema is not None:
            training.ema.update_parameters(training.model)
        training.state.samples_seen += len(idx)
        loss_sum.index_add_(0, torch.as_tensor(idx, device=training.device), terms["total"].detach().double())
        np.add.at(loss_n, idx, 1)
        for k, v in terms.items():
            if not k.startswith("_"):  # the pooled Dice's sums are not loss terms
                sums[k] = sums.get(k, 0.0) + v.detach().mean().double()
        preemption.check(f"in epoch {epoch + 1} after step {step + 1}")
    loss_sum = loss_sum.cpu().numpy()
    sums = {k: float(v) for k, v in sums.items()}
    cur.end_epoch(epoch)
    measured = cur.measured_losses()
    with np.errstate(invalid="ignore", divide="ignore"):
        seen = measured if measured is not None else loss_sum / loss_n
        training.clog.record(epoch, cur.patient_weights(weights), seen)
    metrics = {f"train_loss{'' if k == 'total' else '_' + k}": v / cfg.steps_per_epoch for k, v in sums.items()}
    metrics |= {"lr": training.optimizer.param_groups[0]["lr"], schema.SAMPLES_SEEN: training.state.samples_seen,
                "fraction_in_play": float(np.mean(weights > 0))}
    return metrics | {f"curriculum.{k}": float(v) for k, v in cur.log_state().items()}


def validate(training: Training, epoch: int, metrics: dict) -> CohortEvaluation | None:
    """On validation epochs: the validation patients scored as the test is scored (:func:`_validate`), the
    collapse watch, and a new best checkpoint if the network found a lesion, scores better than every earlier
    validation, and is the one the run delivers (:meth:`Curriculum.model_is_final`).

    A network that finds no lesion on any validation patient is never "best": a run whose every validation
    finds none delivers its last epoch (``finish``), not whichever checkpoint happened to come first."""
    cfg = training.cfg
    if (epoch + 1) % cfg.val_every and epoch != cfg.epochs - 1:
        return None
    net = training.delivered()
    score = _validate(net, training.cohort, training.ids("val"), cfg)
    metrics[schema.VAL_DICE] = score.dice
    if not np.isnan(score.lesion_dice):
        metrics["val_dice_lesion"] = score.lesion_dice
    _watch_collapse(training, epoch, score.found_lesion)
    state = training.state
    if score.found_lesion and score.dice > state.best_val_dice and training.curriculum.model_is_final():
        state.best_val_dice, state.best_epoch = score.dice, epoch
        best = training.checkpoints / "best.pt"
        checkpoint.save({"model": net.state_dict(), "preset": cfg.model, "epoch": epoch, schema.VAL_DICE: score.dice},
                        best)
        training.spool.log_artifact(best, schema.CHECKPOINTS)
    return score.evaluation


def _watch_collapse(training: Training, epoch: int | None, found_lesion: bool = False) -> None:
    """Tag the run clips.collapsed (the streak's first epoch) once its validations say so by the rule of
    :func:`clips.training.collapse.collapse_epoch`; ``epoch`` None: the training has finished. A collapse is seen
    (and counted by a study's report), never averaged in silently."""
    state = training.state
    if epoch is not None:
        state.validations.append([epoch, bool(found_lesion)])
    at = collapse_epoch(state.validations, training.cfg.collapse_after, finished=epoch is None)
    if at >= 0 and state.collapsed_at < 0:
        state.collapsed_at = at
        training.spool.set_tag(schema.COLLAPSED, str(at))
        training.log(f"collapsed: no validation patient's lesion found from epoch {at + 1} on; tagged "
                     f"{schema.COLLAPSED}")


def save_epoch(training: Training, epoch: int, metrics: dict) -> None:
    """Checkpoint first, with this epoch's metrics, then log them: a process killed in between logs
    them on resume, so the history never has a duplicate or a missing epoch."""
    training.state.epoch = epoch
    checkpoint.save_last(training.checkpoints / "last.pt", training, metrics)
    training.spool.log_metrics(metrics, step=epoch)
    training.spool.set_tag(schema.HEARTBEAT, heartbeat_now())  # `clips runs reap` reads it
    training.spool.log_artifact(training.checkpoints / "last.pt", schema.CHECKPOINTS)
    is_last = epoch == training.cfg.epochs - 1
    if (epoch + 1) % training.cfg.table_every == 0 and not is_last:
        try:
            training.clog.log(training.privacy)
        except Exception:  # noqa: BLE001 - server away: the table is logged again at the end
            pass


def finish(training: Training) -> TrainResult:
    """Upload what an outage kept, evaluate the best network on the patients' own grids, log it all."""
    cfg = training.cfg
    training.curriculum.release()
    with training.timer("logging"):
        uploaded = training.spool.wait_and_flush(cfg.outage_wait_min)
    if not uploaded:
        raise ClipsError(
            f"the tracking server {mlflow.get_tracking_uri()} has been unreachable for over "
            f"{cfg.outage_wait_min:g} min; training is done and checkpointed, and {len(training.spool.pending)} "
            f"logging operation(s) are kept in {training.spool.path}. When the server is back, run "
            f"'clips train --resume {training.run_id}' with the same parameters to upload them and finish the run.")
    with training.timer("logging"):
        training.clog.log(training.privacy)
    _watch_collapse(training, None)  # a training that never found a lesion has collapsed too
    net, state = training.model, training.state
    last = {k: v.detach().clone() for k, v in training.delivered().state_dict().items()}  # the last epoch's network
    best = training.checkpoints / "best.pt"
    if best.exists():
        net.load_state_dict(checkpoint.load(best)["model"])
        selected = f"best validation (epoch {state.best_epoch + 1})"
    else:
        net.load_state_dict(last)  # the moving average when there is one
        selected = ("last epoch (no validation split)" if not training.ids("val") else
                    "last epoch (no validation found a lesion)")
    # The epoch the weights come from: the final evaluation is logged at that step, and so is the model, which
    # MLflow 3 then shows with that epoch's metrics (not epoch 0's).
    step = state.best_epoch if best.exists() and state.best_epoch >= 0 else max(state.epoch, 0)
    with training.timer("evaluation"):
        evaluations = {split: _evaluate(net, training.cohort, training.ids(split), cfg) for split in ("val", "test")}
        # The last epoch's network on the test patients too, whichever was delivered: the selection's own
        # noise, measured on the same trajectory (the same table when the last epoch is the one delivered).
        evaluations[schema.LAST_TEST] = evaluations["test"]
        if best.exists() and state.best_epoch != state.epoch:
            net.load_state_dict(last)
            evaluations[schema.LAST_TEST] = _evaluate(net, training.cohort, training.ids("test"), cfg)
            net.load_state_dict(checkpoint.load(best)["model"])
    with training.timer("logging"):
        for split, result in evaluations.items():
            if len(result.table) or result.errors:
                log_evaluation(result, split, privacy=training.privacy, step=step)
        mlflow.log_metric("best_epoch", step, step=step)  # the epoch the delivered weights come from
        mlflow.set_tag(schema.SELECTED, selected)
        training.privacy.save_mapping(training.workdir)
        mlflow.set_tag(schema.PRIVACY, "pseudonymised ids" if training.privacy.active else "real ids")
        log_segmentation_model(net, {"spacing_mm": list(cfg.spacing_mm), "patch_size": list(cfg.patch_size),
                                     "model": cfg.model, "sw_overlap": cfg.sw_overlap}, step=step)
    mlflow.log_metrics(training.timer.metrics(), step=step)
    training.log(training.timer.split())
    return TrainResult(training.run_id, state.best_val_dice, state.best_epoch,
                       evaluations["val"].table, evaluations["test"].table, training.cohort.table)


# ----------------------------------------------------------------------------- helpers
def _epoch_line(epoch: int, epochs: int, metrics: dict, seconds_left: float = 0.0) -> str:
    left = f", about {seconds_left / 60:.0f} min left" if seconds_left >= 90 else (
        f", about {seconds_left:.0f} s left" if seconds_left > 0 else "")
    return (f"epoch {epoch + 1}/{epochs}: loss {metrics['train_loss']:.4f}"
            + (f", val Dice {metrics[schema.VAL_DICE]:.4f}" if schema.VAL_DICE in metrics else "")
            + f", {metrics['fraction_in_play']:.0%} of patients in play ({metrics['epoch_time_s']:.1f} s{left})")


def _log_pending_metrics(run_id: str, epoch: int, metrics: dict | None) -> None:
    """Log the checkpointed epoch's metrics if the killed process did not get to it."""
    if not metrics or epoch < 0:
        return
    logged = {m.step for m in mlflow.MlflowClient().get_metric_history(run_id, "train_loss")}
    if epoch not in logged:
        mlflow.log_metrics(metrics, step=epoch)


def _schedule(optimizer, cfg: TrainConfig):
    """Cosine annealing to 0 over the run, after a linear warm-up of ``warmup_steps`` when asked."""
    total = cfg.epochs * cfg.steps_per_epoch
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, total - cfg.warmup_steps))
    if cfg.warmup_steps <= 0:
        return cosine
    warm = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1.0 / (cfg.warmup_steps + 1), end_factor=1.0,
                                             total_iters=cfg.warmup_steps)
    return torch.optim.lr_scheduler.SequentialLR(optimizer, [warm, cosine], milestones=[cfg.warmup_steps])


def _compiled(training: Training):
    """The training forward pass through torch.compile, compiled once per run (the module's state stays its own)."""
    if training.compiled is None:
        training.compiled = torch.compile(training.model)
    return training.compiled


def _device_of(net) -> torch.device:
    return next(net.parameters()).device


def _init_weights(net, source: str) -> None:
    if getattr(net, "preset", "") == RELEASED_PRESET and checkpoint.is_released(source.split(",")[0]):
        net.load_released(source)  # the released file(s), or the imported model's artifacts: checked key by key
        return
    sd = checkpoint.load_weights(source)
    try:
        net.load_state_dict(sd)
    except RuntimeError as exc:
        raise ClipsError(f"init_weights {source} does not fit model preset {net.preset!r}: "
                         f"{str(exc).splitlines()[0]}") from None


@dataclass
class ValidationScore:
    """One validation: ``dice``, the mean over the validation patients of the test's own Dice (each patient's
    grid, the SUV threshold of EvalSettings), with a lesion-free patient counted symmetrically: 1 when nothing
    is predicted, 0 for any false positive; ``lesion_dice`` the mean over the patients with lesions (NaN:
    none has one); ``found_lesion`` whether the network found any lesion voxel of them."""

    dice: float
    lesion_dice: float
    found_lesion: bool
    evaluation: CohortEvaluation


def _validate(net, cohort: Cohort, ids: list[str], cfg: TrainConfig) -> ValidationScore:
    """Score the validation patients exactly as :func:`_evaluate` scores the test patients (the per-patient suite
    on each patient's own grid), so the checkpoint chosen is chosen by the reported metric."""
    return validation_score(_evaluate(net, cohort, ids, cfg))


def validation_score(evaluation: CohortEvaluation) -> ValidationScore:
    """The selection score of a validation's per-patient table (:class:`ValidationScore`)."""
    table = evaluation.table
    if not len(table):
        return ValidationScore(float("nan"), float("nan"), True, evaluation)
    lesions = table["tmtv_true_ml"] > 0
    symmetric = table["dice"].where(lesions, (table["tmtv_pred_ml"] <= 0).astype(float))
    lesion_dice = float(table.loc[lesions, "dice"].mean()) if lesions.any() else float("nan")
    found = not lesions.any() or bool((table.loc[lesions, "dice"] > 0).any())
    return ValidationScore(float(symmetric.mean()), lesion_dice, found, evaluation)


def _evaluate(net, cohort: Cohort, ids: list[str], cfg: TrainConfig) -> CohortEvaluation:
    """The full per-patient suite on each patient's own grid (docs/metrics.md)."""

    def predict(pid: str):
        probs = predict_probs(net, cohort.cases[pid].image, cfg.patch_size, cfg.sw_overlap, cfg.sw_batch_size,
                              _device_of(net))
        vols = load_patient(cohort.files[pid].without_ct())
        return probs_to_original(probs, vols), vols

    return evaluate_predictions(ids, predict)
