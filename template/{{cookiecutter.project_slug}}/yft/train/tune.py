"""`invoke tune`: hyperparameter search with Optuna over normal training runs.

    invoke tune --trials 20 --epochs 10                   # SQLite study in runs/<exp>/tune/
    invoke tune --storage postgresql://u:p@db/yft         # many machines (or GPUs) on one study
    invoke train --from-trial 7                           # full training with trial 7's settings

Each trial is a normal `yft.train.run.train` run in its own folder, runs/<exp>/tune/<study>/
trial_NNNN/ (checkpoints, curves, logs, its console output in tune_trial.log). Optuna's TPE
sampler draws the settings of the search space (yft.train.tune_space); after every validation the
trial reports the val metric, and the pruner stops trials that are hopeless by then. A trial's
value is its best val metric over its epochs (the same epoch best.pth holds).

The study lives in a database: a SQLite file by default, so a killed study resumes with the same
command (trials a dead process left running on this machine are marked failed and re-queued with
the same settings); with --storage pointing at a PostgreSQL or MySQL server, any number of
workers on any machines share it, and heartbeats re-queue the trials of workers that died.
"""

import contextlib
import os
import re
import socket
import time
import warnings
from pathlib import Path

from yft.project import UserError, load_exp, relative
from yft.runs import runs_root
from yft.train import tune_space
from yft.train.trainer import HookBase

METRICS = ("mAP50_95", "mAP50", "mAP75")
PRUNERS = ("median", "hyperband", "none")
FINISHED = ("COMPLETE", "PRUNED")
# A worker writes a heartbeat this often; a RUNNING trial without one for GRACE seconds is
# failed (and retried once) by the next worker that starts a trial.
HEARTBEAT, GRACE = 60, 180


def tune_root(exp):
    """runs/<exp>/tune/: the studies' SQLite files and one folder of trials per study."""
    return runs_root(exp) / "tune"


def check_study_name(study):
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}", study or ""):
        raise UserError(f"--study {study!r}: use letters, digits, '_', '.' and '-' (it names a folder)")
    return study


def default_storage(exp, study):
    return f"sqlite:///{tune_root(exp) / f'{study}.db'}"


def shown(url):
    """The storage URL for messages, password hidden."""
    from sqlalchemy.exc import ArgumentError

    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):  # not a URL at all: show it as typed
        return url


def open_storage(url, create=True):
    """An Optuna RDBStorage on `url`, connected and checked now (a server that does not answer
    is one UserError, before any trial starts)."""
    import optuna
    from sqlalchemy.exc import IntegrityError, SQLAlchemyError

    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///") :])
        if not create and not path.is_file():
            raise UserError(
                f"{relative(path)}: no study database here (run `invoke tune` first, or give --storage)"
            )
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise UserError(f"--storage {url}: cannot create {path.parent} ({err.strerror or err})") from None
    timeout = {"connect_timeout": 10}  # a server that does not answer fails in seconds, not minutes
    engine_kwargs = {"connect_args": timeout} if url.startswith(("postgresql", "mysql")) else {}
    given = url
    if url.startswith("postgresql://"):  # psycopg 3 whatever SQLAlchemy's default driver is
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeats
    retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)
    try:
        for attempt in range(3):
            try:
                return optuna.storages.RDBStorage(
                    url,
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=HEARTBEAT,
                    grace_period=GRACE,
                    heartbeat_stale_trial_callback=retry,
                )
            except IntegrityError:  # two workers creating the tables of a new database at once
                if attempt == 2:
                    raise
                time.sleep(1 + attempt)
    except ImportError as err:
        missing = getattr(err.__cause__, "name", None) or str(err.__cause__ or err)
        extra = " (pip install -e '.[postgres]')" if "psycopg" in missing else ""
        raise UserError(
            f"--storage {shown(given)}: the database driver is not installed: {missing}{extra}"
        ) from None
    except (SQLAlchemyError, ValueError, OSError) as err:
        first = str(getattr(err, "orig", None) or err).strip().splitlines()[0]
        raise UserError(f"--storage {shown(given)}: cannot use this database ({first})") from None


def build_pruner(name, epochs):
    import optuna

    if name == "median":
        # Never the first 2 trials, nor in the first half of a trial's epochs: early val mAP is
        # mostly noise around 0 (from scratch for several epochs), and a trial with 7e-6 against
        # one with 0 is no evidence. Steps are 1-based epochs.
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=max(2, epochs // 2))
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(1, epochs))
    return optuna.pruners.NopPruner()


class TrialFailed(Exception):
    """A trial that failed because of its settings (diverged, out of memory): recorded as failed,
    and the study goes on."""


class TrialReport(HookBase):
    """After each validation: report the metric to Optuna and stop the run if it is pruned."""

    def __init__(self, trial, metric):
        self.trial, self.metric, self.best, self.pruned_at, self.epochs = trial, metric, None, None, 0

    def after_epoch(self):
        t = self.trainer
        self.epochs = t.epoch + 1
        if not t.metrics or t.metrics.get("epoch") != t.epoch + 1:
            return
        value = float(t.metrics.get(self.metric) or 0.0)
        self.best = value if self.best is None else max(self.best, value)
        self.trial.report(value, t.epoch + 1)
        if self.trial.should_prune():
            self.pruned_at, t.should_stop = t.epoch + 1, True


def process_started(pid):
    """A process's start time (to tell a live worker from a reused pid), or None if it is gone."""
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, TypeError, ValueError):
        return None


def fail_dead_trials(study, storage):
    """RUNNING trials of workers on this machine that no longer exist (killed): mark them failed
    and queue them again with the same settings. Returns their numbers."""
    import optuna
    from optuna.trial import TrialState

    host, dead = socket.gethostname(), []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        attrs = trial.user_attrs
        if attrs.get("host") != host or "pid" not in attrs:
            continue
        started = process_started(attrs["pid"])
        if started is not None and abs(started - attrs.get("pid_started", started)) < 1:
            continue  # still running
        storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)(
            study, storage.get_trial(trial._trial_id)
        )
        dead.append(trial.number)
    return dead


def finished(study):
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))


def format_eta(seconds):
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class ProgressLine:
    """Optuna callback: one line per finished, pruned or failed trial with the best so far and an
    ETA from the study-wide rate (all workers) since this worker started."""

    def __init__(self, n_trials, metric):
        self.n_trials, self.metric, self.started = n_trials, metric, time.time()

    def __call__(self, study, trial):
        done = finished(study)
        mine = [t for t in done if t.datetime_complete and t.datetime_complete.timestamp() >= self.started]
        rate = len(mine) / max(1e-9, time.time() - self.started)
        left = max(0, self.n_trials - len(done))
        eta = format_eta(left / rate) if rate > 0 else "?"
        state = trial.state.name.lower()
        if state == "fail":
            head = f"trial {trial.number} failed: {trial.user_attrs.get('error', 'see its tune_trial.log')}"
        else:
            value = f"{100 * trial.value:.2f}" if trial.value is not None else "n/a"
            where = f" at epoch {trial.user_attrs.get('epochs')}" if state == "pruned" else ""
            head = f"trial {trial.number} {state}{where}: {self.metric} {value}"
        best = best_trial(study)
        best_text = f"best {100 * best.value:.2f} (trial {best.number})" if best else "best n/a"
        settings = ", ".join(
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={tune_space.as_text(v)}"
            for k, v in trial.params.items()
        )
        print(f"{head}  {best_text}  {len(done)}/{self.n_trials} done  eta {eta}  [{settings}]", flush=True)


def best_trial(study):
    from optuna.trial import TrialState

    complete = [
        t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value is not None
    ]
    return max(complete, key=lambda t: (t.value, -t.number)) if complete else None


SCRATCH_KEYS = {"basic_lr_per_img": "scratch_basic_lr_per_img", "warmup_epochs": "scratch_warmup_epochs"}


def tune(
    exp_path,
    device,
    n_trials=20,
    epochs=10,
    iters=0,
    study_name="default",
    storage=None,
    space_file=None,
    metric="mAP50_95",
    pruner="median",
    seed=None,
    ckpt=None,
    batch_size=None,
    overrides=(),
    timeout=None,
    verbose=False,
    from_scratch=False,
):
    """Run (or resume, or join) a study until it holds n_trials finished trials; returns
    (study, storage URL, tune folder)."""
    import optuna

    from yft.data.precheck import check_split

    check_study_name(study_name)
    if metric not in METRICS:
        raise UserError(f"--metric {metric}: use one of {', '.join(METRICS)}")
    if pruner not in PRUNERS:
        raise UserError(f"--pruner {pruner}: use one of {', '.join(PRUNERS)}")
    if n_trials < 1 or epochs < 1 or iters < 0:
        raise UserError(
            f"--trials {n_trials}, --epochs {epochs}, --iters {iters}: need trials >= 1, "
            "epochs >= 1 and iters >= 0"
        )
    if ckpt and not Path(ckpt).is_file():
        raise UserError(f"{ckpt}: checkpoint not found")
    base = [*overrides, f"max_epoch={epochs}"]
    exp = load_exp(exp_path, base)
    check_split(exp, "train")
    check_split(exp, "val")
    # the starting weights once, before the study exists: missing pretrained weights are one line,
    # not a failed trial in the database under Optuna's traceback (a download lands in the cache)
    from yft.train.weights import starting_weights

    if starting_weights(exp, ckpt, from_scratch).profile == "scratch":
        # without starting weights a run trains with scratch_basic_lr_per_img and
        # scratch_warmup_epochs in place of the finetuning two: search those, else the LR and
        # warmup of the trials would change nothing
        import copy

        view = copy.copy(exp)
        view.basic_lr_per_img, view.warmup_epochs = exp.scratch_basic_lr_per_img, exp.scratch_warmup_epochs
        raw = tune_space.load_space_file(space_file) if space_file else tune_space.exp_space(view)
        raw = {SCRATCH_KEYS.get(key, key): value for key, value in raw.items()}
    else:
        raw = tune_space.load_space_file(space_file) if space_file else tune_space.exp_space(exp)
    space = tune_space.validate_space(exp, raw, space_file or "the Exp's tune_space")
    url = storage or default_storage(exp, study_name)
    store = open_storage(url)
    out = tune_root(exp) / study_name
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    study = optuna.create_study(
        storage=store,
        study_name=study_name,
        direction="maximize",
        load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=build_pruner(pruner, epochs),
    )
    if study.direction != optuna.study.StudyDirection.MAXIMIZE:
        raise UserError(f"study {study_name!r} in {shown(url)} minimises; tune maximises val mAP")
    if not study.get_trials(deepcopy=False) and out.is_dir() and any(out.glob("trial_*")):
        raise UserError(
            f"{relative(out)} already holds trial folders of an earlier study named "
            f"{study_name!r}: use another --study, or move that folder away"
        )
    requeued = fail_dead_trials(study, store)
    if requeued:
        print(
            f"trials {', '.join(map(str, requeued))} were left running by a killed worker: "
            "marked failed, queued again with the same settings"
        )
    done = len(finished(study))
    print(
        f"study {study_name!r} in {shown(url)}: {done}/{n_trials} trials finished; "
        f"{len(space)} settings searched, {epochs} epochs per trial"
        + (f" x {iters} iterations" if iters else "")
        + f", objective val {metric}"
    )
    if done >= n_trials:
        return study, url, out
    train_seed = exp.seed if exp.seed is not None else 0

    def objective(trial):
        from yft.train.run import train

        run = out / f"trial_{trial.number:04d}"
        if run.exists():
            raise UserError(
                f"{relative(run)} already exists: trial numbers of study {study_name!r} "
                "clash with an earlier one; use another --study"
            )
        trial_overrides = tune_space.suggest(trial, space)
        for key, value in {
            "run_dir": str(run),
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "pid_started": process_started(os.getpid()),
            "overrides": trial_overrides,
            # how the trial's weights started, for the `invoke train --from-trial` hint
            "start": f"--ckpt {relative(ckpt)}" if ckpt else "--from-scratch" if from_scratch else "",
        }.items():
            trial.set_user_attr(key, value)
        trial_exp = load_exp(exp_path, base + trial_overrides)
        trial_exp.seed = train_seed  # every trial sees the same data order: they differ by settings only
        report = TrialReport(trial, metric)
        run.mkdir(parents=True)
        try:
            with _captured(run / "tune_trial.log", verbose):
                train(
                    trial_exp,
                    device,
                    ckpt=ckpt,
                    from_scratch=from_scratch,
                    batch_size=batch_size,
                    out_dir=run,
                    progress=False,
                    max_iters_per_epoch=iters or None,
                    extra_hooks=[report],
                )
        except FloatingPointError as err:  # diverged: a fact about these settings, not an error
            trial.set_user_attr("error", str(err).split(";")[0])
            raise TrialFailed(str(err)) from None
        except UserError as err:
            if not str(err).startswith("out of memory"):
                raise  # anything else stops the study: it would fail every trial
            trial.set_user_attr("error", str(err).split(":")[0])
            raise TrialFailed(str(err)) from None
        finally:
            trial.set_user_attr("epochs", report.epochs)
        if report.pruned_at:
            raise optuna.TrialPruned(f"pruned at epoch {report.pruned_at}")
        return report.best if report.best is not None else 0.0

    import torch

    catch = (TrialFailed, torch.OutOfMemoryError)
    callbacks = [
        optuna.study.MaxTrialsCallback(
            n_trials, states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        ),
        ProgressLine(n_trials, metric),
    ]
    study.optimize(
        objective,
        n_trials=n_trials - done,
        timeout=timeout,
        catch=catch,
        callbacks=callbacks,
        gc_after_trial=True,
    )
    return study, url, out


@contextlib.contextmanager
def _captured(path, verbose):
    """A trial's console output goes to its log file (and the console too with --verbose)."""
    if verbose:
        yield
        return
    with (
        open(path, "a", encoding="utf-8") as log,
        contextlib.redirect_stdout(log),
        contextlib.redirect_stderr(log),
    ):
        yield


def trial_overrides(exp, number, study_name="default", storage=None):
    """`key=value` overrides of a finished trial, for `invoke train --from-trial N`."""
    import optuna

    check_study_name(study_name)
    url = storage or default_storage(exp, study_name)
    store = open_storage(url, create=False)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=study_name, storage=store)
    except KeyError:
        raise UserError(f"--study {study_name}: no such study in {shown(url)}") from None
    match = [t for t in study.get_trials(deepcopy=False) if t.number == number]
    if not match:
        raise UserError(
            f"--from-trial {number}: study {study_name!r} has no trial {number} (it has {len(study.trials)})"
        )
    trial = match[0]
    if trial.state.name not in FINISHED:
        raise UserError(f"--from-trial {number}: that trial is {trial.state.name.lower()}, not finished")
    return tune_space.overrides_of(trial.params)
