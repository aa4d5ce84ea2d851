"""What the task front door (tasks.py) needs besides the tasks: typed option values in `--help`,
a one-line error for a value of the wrong type, and range checks for numeric options.

Only the standard library and invoke here: tasks.py imports this before `invoke setup` has
installed anything else.
"""

from yft.project import UserError

# invoke 3.0 names only str and int values in --help: a float or repeatable option then looks
# like a flag without value (`-t, --train`).
VALUE_NAMES = {str: "STRING", int: "INT", float: "NUMBER", list: "STRING"}
KIND_WORDS = {int: "a whole number", float: "a number"}


def install():
    """Patch invoke's help and value parsing (idempotent)."""
    from invoke.exceptions import ParseError
    from invoke.parser.argument import Argument
    from invoke.parser.context import ParserContext

    if getattr(Argument.set_value, "_yft", False):
        return

    original_set = Argument.set_value

    def set_value(self, value, cast=True):
        try:
            original_set(self, value, cast)
        except ValueError:
            # One line and exit 1 (invoke prints ParseErrors), not a traceback.
            raise ParseError(
                f"--{self.name.replace('_', '-')} {value!r}: expected "
                f"{KIND_WORDS.get(self.kind, self.kind.__name__)}"
            ) from None

    set_value._yft = True
    Argument.set_value = set_value
    ParserContext.help_for = help_for


def help_for(self, flag):
    """ParserContext.help_for with a value name for every option that takes one."""
    if flag not in self.flags:
        raise ValueError(f"{flag!r} is not a valid flag for this context")
    arg = self.flags[flag]
    value = VALUE_NAMES.get(arg.kind) if arg.takes_value else None
    names = []
    for name in self.names_for(flag):
        if value:
            short = len(name.strip("-")) == 1
            text = f" {value}" if short else f"={value}"
            if arg.optional:
                text = f" [{value}]" if short else f"[={value}]"
            names.append(name + text)
        else:
            if name in self.inverse_flags.values():
                name = f"--[no-]{name[2:]}"
            names.append(name)
    helpstr = arg.help or ""
    if arg.kind is list and "repeat" not in helpstr.lower():
        helpstr += " (repeatable)"
    return ", ".join(sorted(names, key=len)), helpstr


def _at_least(minimum):
    return (lambda value, default: value >= minimum), f"must be at least {minimum}"


def _count(value, default):  # 0 means "the Exp's" where that is the default
    return value >= (0 if default == 0 else 1)


def _unit_or_unset(value, default):  # -1 is the tasks' "not given" (the Exp's value)
    return value == default or 0.0 <= value <= 1.0


# Numeric options by name, checked before any task runs (tasks.friendly): a bad value is one
# line naming the option, never a traceback from deep inside.
RULES = {
    **dict.fromkeys(
        (
            "batch_size",
            "calib_images",
            "min_batch",
            "opt_batch",
            "max_batch",
            "top",
            "max_images",
            "permutations",
            "samples",
            "number",
            "devices",
            "nnodes",
            "folds",
            "epochs",
        ),
        (_count, "must be at least 1"),
    ),
    **{name: _at_least(0) for name in ("seed", "node_rank", "max_bits", "kfold")},
    **dict.fromkeys(
        ("conf", "nms", "iou", "fraction", "min_score"), (_unit_or_unset, "must be between 0 and 1")
    ),
    **{name: ((lambda v, d: v > 0), "must be above 0") for name in ("every", "workspace", "min_time")},
    "master_port": ((lambda v, d: 1 <= v <= 65535), "must be a port number, 1 to 65535"),
}


def check_options(task, options):
    """UserError for the first option of `task` (a function) whose value breaks its rule.
    Fractions (float train/val/test) must lie in 0..1; image counts (int) must not be negative."""
    import inspect

    defaults = {name: p.default for name, p in inspect.signature(task).parameters.items()}
    for name, value in options.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value == defaults.get(name):
            continue  # a task's own default (often a -1 "not given") always passes
        rule = RULES.get(name)
        if name in ("train", "val", "test"):
            rule = (
                ((lambda v, d: 0.0 <= v <= 1.0), "must be between 0 and 1")
                if isinstance(defaults.get(name), float)
                else ((lambda v, d: v >= 0), "must be 0 or more")
            )
        if rule and not rule[0](value, defaults.get(name)):
            raise UserError(f"--{name.replace('_', '-')} {value}: {rule[1]}")


def optional(value):
    """The tasks' "not given" default for a number (a negative sentinel) as None."""
    return None if value is None or value == -1 else value
