"""What a study leaves behind: a table of trials, the best trial's settings as a block to paste
into the Exp (and as JSON), and Optuna's own plots as PNG."""

import warnings

from yft.io import write_atomic, write_figure, write_json
from yft.project import relative
from yft.train import tune_space


def trial_rows(study):
    """One row per trial, best first (finished trials by value, then the others by number)."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        minutes = t.duration.total_seconds() / 60 if t.duration else None
        rows.append(
            {
                "trial": t.number,
                "state": t.state.name.lower(),
                "value": None if t.value is None else round(100 * t.value, 2),
                "epochs": t.user_attrs.get("epochs"),
                "minutes": None if minutes is None else round(minutes, 2),
                "host": t.user_attrs.get("host"),
                "run_dir": t.user_attrs.get("run_dir"),
                **t.params,
            }
        )
    return sorted(rows, key=lambda r: (r["value"] is None, -(r["value"] or 0), r["trial"]))


def trials_table(study, metric, limit=30):
    from tabulate import tabulate

    rows = trial_rows(study)
    if not rows:
        return "no trials yet"
    params = sorted({k for t in study.get_trials(deepcopy=False) for k in t.params})

    def short(value):
        return f"{value:.3g}" if isinstance(value, float) else value

    table = [
        [r["trial"], r["state"], r["value"], r["epochs"], r["minutes"], *(short(r.get(p)) for p in params)]
        for r in rows[:limit]
    ]
    more = f"\n... {len(rows) - limit} more trials in trials.json" if len(rows) > limit else ""
    return tabulate(table, headers=["trial", "state", metric, "epochs", "min", *params]) + more


def write_best(study, exp, url, out, metric):
    """best.json and best_exp.py for the best complete trial; returns their paths (none without one)."""
    from yft.train.tune import best_trial

    best = best_trial(study)
    if best is None:
        return []
    command = (
        f"invoke train --from-trial {best.number}"
        + (f" {best.user_attrs['start']}" if best.user_attrs.get("start") else "")
        + (f" --study {study.study_name}" if study.study_name != "default" else "")
        + ("" if url.startswith("sqlite:///") else " --storage URL")
    )
    header = [
        f"# invoke tune: best of {len(study.trials)} trials of study {study.study_name!r}: "
        f"val {metric} {100 * best.value:.2f} (trial {best.number}, {best.user_attrs.get('run_dir', '?')})",
        "# The trials trained for a short budget: keep your own max_epoch for the full run.",
        "# Paste into your Exp's __init__, or train with these settings directly:",
        f"#   {command}",
    ]
    block = tune_space.exp_block(exp, best.params)
    write_atomic(out / "best_exp.py", ("\n".join(header + block) + "\n").encode("utf-8"))
    write_json(
        out / "best.json",
        {
            "study": study.study_name,
            "trial": best.number,
            "metric": metric,
            "value": best.value,
            "params": best.params,
            "overrides": tune_space.overrides_of(best.params),
            "run_dir": best.user_attrs.get("run_dir"),
            "train_command": command,
        },
        indent=1,
    )
    return [out / "best_exp.py", out / "best.json"]


def write_trials(study, out):
    write_json(out / "trials.json", trial_rows(study), indent=1)
    return out / "trials.json"


def write_plots(study, out):
    """Optimisation history, parameter importances and parallel coordinates as PNG. Returns
    (paths written, notes on plots that need more finished trials)."""
    import matplotlib

    matplotlib.use("Agg")
    import optuna
    from optuna.visualization import matplotlib as plots

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    written, notes = [], []
    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    for name, plot, needs in (
        ("optimization_history", plots.plot_optimization_history, 1),
        ("param_importances", plots.plot_param_importances, 2),
        ("parallel_coordinate", plots.plot_parallel_coordinate, 1),
    ):
        if len(complete) < needs:
            notes.append(f"no {name}.png: it needs {needs} complete trials")
            continue
        try:
            with warnings.catch_warnings():  # flat axes and equal importances: harmless with few trials
                warnings.simplefilter("ignore", UserWarning)
                axes = plot(study)
        except (ValueError, RuntimeError) as err:  # e.g. importances when no parameter varied
            notes.append(f"no {name}.png: {err}")
            continue
        figure = (axes.flat[0] if hasattr(axes, "flat") else axes).figure
        figure.set_size_inches(max(8, figure.get_size_inches()[0]), 5)
        write_figure(out / f"{name}.png", figure)
        written.append(out / f"{name}.png")
    return written, notes


def summarize(study, exp, url, out, metric):
    """Print the table, write best_exp.py / best.json / trials.json / plots, print where."""
    print(trials_table(study, metric))
    paths = write_best(study, exp, url, out, metric)
    if paths:
        print("\n" + (out / "best_exp.py").read_text(encoding="utf-8").rstrip())
    plots, notes = write_plots(study, out)
    for note in notes:
        print(note)
    for path in [*paths, write_trials(study, out), *plots]:
        print(f"wrote {relative(path)}")
