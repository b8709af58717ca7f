"""The run's schema, in one place: every tag, role and artifact path that one module writes and another reads.

Writers and readers import these names; ``tests/test_architecture.py`` fails on any of these strings spelled out
elsewhere in the package, so a misspelt tag cannot silently match no run. A leaf module (no imports): the CLI
reads it without importing MLflow.
"""

DEFAULT_EXPERIMENT = "clips"  # runs go here unless MLFLOW_EXPERIMENT_NAME or --experiment says otherwise

# ----------------------------------------------------------------------------- tags
ROLE = "clips.role"  # what a run is: one of the ROLES below
FAILURE = "clips.failure"  # why a run ended FAILED (mark_failed)
STUDY_NAME = "clips.study_name"  # a study's or a tuning's name, on its parent and its children
STUDY_KEY = "clips.study_key"  # a study child's job: curriculum:fold:seed
FOLD = "clips.fold"  # a study child's test fold (-1: one split)
WORKER = "clips.worker"  # host:pid of the worker that trained a child
CURRICULUM = "clips.curriculum"
PROFILE = "clips.profile"
PAPER = "clips.paper"
COHORT_DIGEST = "clips.cohort_digest"
PRIVACY = "clips.privacy"  # real or pseudonymised patient ids in the run's tables
PRIVACY_MODES = ("auto", "pseudonymize", "real")  # the values of the privacy parameter (tracking/privacy.py)
HEARTBEAT = "clips.heartbeat"  # a training's last sign of life (UTC), read by clips runs reap
MACHINE_BUSY = "clips.machine_busy"  # other processes shared the run's cores
COLLAPSED = "clips.collapsed"  # the first epoch of collapse_after validations in a row that found no lesion
SELECTED = "clips.selected"  # which network the run delivers, and by which rule (trainer.finish)
CONTINUES = "clips.continues"  # a study restart: the parent it continues
RESUMED_AFTER = "clips.resumed_after"  # a resumed training: the checkpointed epoch it continued after (the latest)
RESUMES = "clips.resumes"  # how many times a training was resumed
EARLIER_FAILURE = "clips.earlier_failure"  # a resumed run's FAILURE before it was resumed (FAILURE itself goes)
NOT_RESUMABLE = "clips.not_resumable"  # why a dead study child was not resumed (a fresh run trained its job)
FAILED_CHILDREN = "clips.failed_children"
WITHDRAWN = "clips.withdrawn"  # the withdrawn arms; WITHDRAWN + ".<arm>": when, and what had been seen
CALIBRATION = "clips.calibration"  # passed | failed | not possible: the A/A check of the last comparison
DESIGN_CHANGES = "clips.design_changes"  # each restart that changed a study's design, when and how
EXPLORATORY = "clips.exploratory"  # why every contrast of a study is exploratory (grown without a sequential plan)
SEQUENTIAL = "clips.sequential"  # a sequential study's state: each contrast's decision and look
WORKER_EXIT_CODES = "clips.worker_exit_codes"
TRIAL_NUMBER = "clips.trial_number"
OBJECTIVE = "clips.objective"
TUNE_RESULT = "clips.tune_result"
BEST_TRIAL = "clips.best_trial"
BEST_RUN_ID = "clips.best_run_id"
BEST_MODEL = "clips.best_model"
PREFIX = "clips."  # every CLIPS tag; promotion also writes clips.<metric> with the challenger's value
BEST_PREFIX = "clips.best."  # + a tuned parameter's name
FIGURE_PREFIX = "clips.figure."  # + a figure's name: why it was not drawn
REEVAL_CANDIDATE = "clips.reeval_candidate"
REFERENCE = "clips.reference"  # a study child that evaluated a fixed model (its URI), not a training
PEER = "clips.peer"  # a study child of a peer arm (clips/peers): the peer's name
REEVAL_VERDICT = "clips.reeval_verdict"
# promotion's evidence on the model version (and the promote run)
PROMOTE_RUN = "clips.run_id"
PROMOTE_EXPERIMENT = "clips.experiment"
PROMOTE_METRIC = "clips.metric"
DECISION = "clips.decision"
REASON = "clips.reason"
CHALLENGER_RUN = "clips.challenger_run_id"
MODEL_VERSION = "clips.model_version"
EVIDENCE_PREFIX = "clips.evidence."  # + a figure of the paired test
# provenance on every registered model and version (clips/registry/provenance.py), carried into exports
INTENDED_USE = "clips.intended_use"
LICENCE = "clips.licence"  # the weights' licence
SOURCE = "clips.source"  # where the weights come from: a DOI, a URL, or the CLIPS run that trained them
TRAINING_DATA = "clips.training_data"  # what the weights were trained on, as the user states it

# the values of ROLE
STUDY_PARENT, STUDY_CHILD, STUDY_RESTART = "study_parent", "study_child", "study_restart"
TUNE_PARENT, TUNE_TRIAL, TUNE_REEVAL = "tune_parent", "tune_trial", "tune_reeval"
MODEL_IMPORT = "model_import"

# ----------------------------------------------------------------------------- parameters and metrics read back
CFG = "cfg."  # + a training parameter: every run's own (trainer.run_parameters), a peer's and a reference's child
STUDY = "study."  # + a key of the study's design, on its parent (runner), read by compare's report
TRAIN = "train."  # + a training parameter that a study's or a tuning's parent shares with every child
CURRICULUM_PARAM = CFG + "curriculum"  # the arm of a study child (a curriculum, a peer or a reference name)
SEED_PARAM = CFG + "seed"
FOLD_PARAM = CFG + "fold"
FOLDS_PARAM = CFG + "folds"
DATA_DIR_PARAM = CFG + "data_dir"
CONTRASTS_PARAM = STUDY + "contrasts"  # a study parent's declared primary contrasts, comma-separated
VAL_DICE = "val_dice"  # per epoch: the validation score (trainer), the learning curves of compare
SAMPLES_SEEN = "samples_seen"  # per epoch: training patches so far, the curves' x axis
TIME = "time/"  # + a phase: seconds a training (training/timing.py) or a peer spent in it

# ----------------------------------------------------------------------------- artifacts
SPLIT = "data/split.csv"  # the run's split with the cohort's own columns (hard flags)
SKIPPED = "data/skipped.json"
DIFFICULTY = "tables/difficulty.json"  # the training patients' difficulty features and scores
COHORT_DIFFICULTY = "tables/cohort_difficulty.json"  # every patient's cohort score, logged by each run
CURRICULUM_LONG = "tables/curriculum_long.json"  # per patient and epoch: in play, weight, loss
CURRICULUM_FIGURE = "figures/curriculum.png"
TRIALS = "tables/trials.json"
REEVALUATION = "tables/reevaluation.json"
CHECKPOINTS = "checkpoints"


def per_patient_table(split: str) -> str:
    """The per-patient evaluation table of ``split`` (val, test)."""
    return f"tables/{split}_per_patient.json"


TEST_TABLE, VAL_TABLE = per_patient_table("test"), per_patient_table("val")
# The last epoch's network on the test patients, beside the delivered (selected) one's: metrics test_last_*, its
# table and evaluation folder; so the selection's own noise is measured on identical trajectories.
LAST_TEST = "test_last"
LAST_TEST_TABLE = per_patient_table(LAST_TEST)


def tag_is(key: str, value: str) -> str:
    """A search filter on one tag."""
    return f"tags.`{key}` = '{value}'"


def mark_failed(client, run_id: str, reason: str) -> None:
    """End a run FAILED with its reason (tag FAILURE), the one way every part of CLIPS does it."""
    client.set_tag(run_id, FAILURE, reason[:500])
    client.set_terminated(run_id, "FAILED")
