"""The search space of `invoke tune`: which Exp settings vary, over what range.

A space maps Exp setting names to an Optuna distribution, written the way Optuna's own
`trial.suggest_*` calls are (the same dict in the Exp and in a `--space FILE.yaml`):

    basic_lr_per_img: {low: 6.25e-06, high: 6.25e-04, log: true}   # suggest_float
    warmup_epochs: {low: 0, high: 3}                               # ints: suggest_int
    mosaic_prob: {low: 0.0, high: 1.0, step: 0.25}                 # step is optional
    strategy: {choices: [full, head, progressive]}                 # suggest_categorical
    input_size: {choices: [320, 416, 480]}                         # square sizes, multiples of 32
    mosaic_scale: {choices: [[0.5, 1.5], [0.1, 2.0]]}              # tuples as lists

Every value a trial draws becomes a `key=value` override, applied exactly as `invoke train --set`
applies it (same parsing, same type checks), so a trial's settings can be replayed by hand.
Ranges and choices are checked against the Exp before any trial starts.
"""

import copy

from yft.project import UserError, apply_overrides

KEYS = {"low", "high", "log", "step", "choices"}


def default_space(exp):
    """Finetuning defaults, relative to the Exp's current settings: LR per image from a tenth to
    ten times the current one, warmup, weight decay, mosaic/mixup probabilities and mosaic scale,
    transfer strategy, input size within +-64 px (multiples of 32) and EMA on/off."""
    lr = float(exp.basic_lr_per_img)
    size = int(exp.input_size[0])
    sizes = sorted({max(64, size + d) for d in (-64, 0, 64)})
    space = {
        "basic_lr_per_img": {"low": lr / 10, "high": lr * 10, "log": True},
        "warmup_epochs": {"low": 0, "high": max(1, min(5, int(exp.max_epoch) // 4))},
        "weight_decay": {"low": 1e-5, "high": 1e-3, "log": True},
        "mosaic_prob": {"low": 0.0, "high": 1.0},
        "mixup_prob": {"low": 0.0, "high": 1.0},
        "mosaic_scale": {"choices": [[0.5, 1.5], [0.1, 2.0]]},
        "strategy": {"choices": ["full", "head", "progressive"]},
        "input_size": {"choices": sizes},
        "ema": {"choices": [True, False]},
    }
    if not getattr(exp, "enable_mixup", True):  # nano/tiny turn mixup off: its probability changes nothing
        del space["mixup_prob"]
    return space


def exp_space(exp):
    """The Exp's space: default_space() with exp.tune_space's entries replacing or adding to
    it (an entry set to None removes that setting from the search)."""
    space = default_space(exp)
    for key, entry in (getattr(exp, "tune_space", None) or {}).items():
        if entry is None:
            space.pop(key, None)
        else:
            space[key] = entry
    return space


def load_space_file(path):
    """A space from a YAML file; a YAML error names the file, line and column."""
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except FileNotFoundError:
        raise UserError(f"{path}: space file not found") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise UserError(f"{path}:{where}: not valid YAML ({problem})") from None
    if not isinstance(data, dict) or not data:
        raise UserError(
            f"{path}: expected a mapping of Exp setting names to ranges, e.g. "
            "'basic_lr_per_img: {low: 1.0e-5, high: 1.0e-3, log: true}'"
        )
    return data


def as_text(value):
    """A value as `--set` text: lists become '0.5,1.5', booleans 'true'/'false'."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(as_text(v) for v in value)
    return str(value)


def _check_applies(exp, key, value, where):
    """Apply one value to a copy of the Exp and run its own check(), so a bad choice (an input
    size that is not a multiple of 32, a strategy that does not exist) fails now."""
    from yft.train.transfer import STRATEGIES

    probe = copy.deepcopy(exp)
    try:
        apply_overrides(probe, [f"{key}={as_text(value)}"])
        probe.check()
    except (UserError, ValueError) as err:
        message = str(err).replace(f"--set {key}", key)
        raise UserError(f"{where}: {key}: {value!r} does not fit the Exp ({message})") from None
    if key == "strategy" and value not in STRATEGIES:
        raise UserError(f"{where}: strategy: {value!r} is not one of {', '.join(STRATEGIES)}")


def validate_space(exp, space, where="tune_space"):
    """Check every entry; returns the space with its entries normalised. One UserError names
    the source (`where`: the Exp or the YAML file) and the setting."""
    if not space:
        raise UserError(f"{where}: the search space is empty")
    checked = {}
    for key, entry in space.items():
        if not isinstance(key, str) or not hasattr(exp, key):
            raise UserError(f"{where}: {key!r} is not an Exp setting (see yft/exp.py for the names)")
        if not isinstance(entry, dict) or not entry or set(entry) - KEYS:
            unknown = sorted(set(entry) - KEYS) if isinstance(entry, dict) else entry
            raise UserError(f"{where}: {key}: expected low/high[/log/step] or choices, got {unknown!r}")
        if "choices" in entry:
            choices = entry["choices"]
            if set(entry) != {"choices"}:
                raise UserError(f"{where}: {key}: 'choices' cannot be combined with low/high/log/step")
            if not isinstance(choices, (list, tuple)) or not choices:
                raise UserError(f"{where}: {key}: empty choices")
            texts = [as_text(c) for c in choices]
            if len(set(texts)) != len(texts):
                raise UserError(f"{where}: {key}: choices repeat a value ({choices!r})")
            for choice in choices:
                _check_applies(exp, key, choice, where)
            checked[key] = {"choices": list(choices)}
            continue
        low, high = entry.get("low"), entry.get("high")
        numbers = (int, float)
        if (
            not isinstance(low, numbers)
            or not isinstance(high, numbers)
            or isinstance(low, bool)
            or isinstance(high, bool)
        ):
            raise UserError(f"{where}: {key}: low and high must both be numbers (got {low!r}, {high!r})")
        if not low < high:
            raise UserError(f"{where}: {key}: empty range (low {low} is not below high {high})")
        log, step = bool(entry.get("log", False)), entry.get("step")
        if log and low <= 0:
            raise UserError(f"{where}: {key}: a log range needs low > 0 (got {low})")
        if log and step is not None:
            raise UserError(f"{where}: {key}: log and step cannot be combined")
        if step is not None and (not isinstance(step, numbers) or step <= 0 or step > high - low):
            raise UserError(f"{where}: {key}: step {step!r} must be > 0 and at most high - low")
        integer = isinstance(getattr(exp, key), int) and not isinstance(getattr(exp, key), bool)
        if integer and not (isinstance(low, int) and isinstance(high, int)):
            raise UserError(f"{where}: {key}: the setting is an integer, so low and high must be too")
        for value in (low, high):
            _check_applies(exp, key, value, where)
        checked[key] = {"low": low, "high": high, "log": log, "step": step, "int": integer}
    return checked


def distributions(space):
    """Optuna distributions for a validated space (tuples and lists as their `--set` text)."""
    import optuna.distributions as d

    out = {}
    for key, entry in space.items():
        if "choices" in entry:
            choices = entry["choices"]
            plain = all(c is None or isinstance(c, (bool, int, float, str)) for c in choices)
            out[key] = d.CategoricalDistribution(choices if plain else [as_text(c) for c in choices])
        elif entry["int"]:
            out[key] = d.IntDistribution(
                entry["low"], entry["high"], log=entry["log"], step=int(entry["step"] or 1)
            )
        else:
            out[key] = d.FloatDistribution(
                float(entry["low"]), float(entry["high"]), log=entry["log"], step=entry["step"]
            )
    return out


def suggest(trial, space):
    """Draw one value per setting; returns the `key=value` overrides for the trial."""
    overrides = []
    for key, dist in distributions(space).items():
        if hasattr(dist, "choices"):
            value = trial.suggest_categorical(key, dist.choices)
        elif space[key]["int"]:
            value = trial.suggest_int(key, dist.low, dist.high, step=dist.step, log=dist.log)
        else:
            value = trial.suggest_float(key, dist.low, dist.high, step=dist.step, log=dist.log)
        overrides.append(f"{key}={as_text(value)}")
    return overrides


def overrides_of(params):
    """`key=value` overrides from a finished trial's params."""
    return [f"{key}={as_text(value)}" for key, value in params.items()]


def exp_block(exp, params):
    """The params as lines to paste into the Exp's __init__ (values as the Exp holds them:
    an input size 416 becomes (416, 416))."""
    probe = copy.deepcopy(exp)
    apply_overrides(probe, overrides_of(params))
    return [f"self.{key} = {getattr(probe, key)!r}" for key in params]
