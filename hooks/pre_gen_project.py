"""Answer validation shared by both front doors.

copier checks answers with the `validator:` expressions in copier.yml; cookiecutter has no
validators, so it runs this hook before it writes anything. `validate()` holds the same rules
in plain Python (the template's tests hold the two to the same verdicts).
"""

import json
import string
import sys

MODELS = ("yolox_nano", "yolox_tiny", "yolox_s", "yolox_m", "yolox_l", "yolox_x")
CLASS_MODES = ("fresh", "keep_coco")
TRACKERS = ("tensorboard", "mlflow", "wandb", "none")
SLUG_CHARS = set(string.ascii_lowercase + string.digits + "-")
DATASET_CHARS = set(string.ascii_lowercase + string.digits + "_")
# Length limits: the slug and the dataset name become folder and file names (255 bytes at most
# on common file systems), and no title or class label needs more.
NAME_MAX, SLUG_MAX, DATASET_MAX, CLASS_NAME_MAX = 100, 64, 64, 100


def split_class_names(raw):
    """'a, b' or ['a', 'b'] -> ['a', 'b'] as typed (untrimmed, blanks kept so they can be reported)."""
    return raw.split(",") if isinstance(raw, str) else list(raw)


def class_name_problem(raw):
    """The first problem with the class names, or None (the checks and order of copier.yml)."""
    if not isinstance(raw, (str, list, tuple)):
        return "Class names must be a list such as [helmet, vest]."
    seen = set()
    for number, item in enumerate(split_class_names(raw), start=1):
        if not isinstance(item, str):
            return f'Class name {item} is not text: quote it, e.g. "{item}".'
        name = item.strip()
        if not name:
            return f"Class name number {number} is blank."
        # As typed, so a tab or newline next to a comma counts too (copier's YAML refuses those).
        if not item.isprintable():
            return f'Class name "{name}" contains a control character.'
        if len(name) > CLASS_NAME_MAX:
            return f"Class name number {number} is longer than {CLASS_NAME_MAX} characters."
        if "," in name:
            return f'Class name "{name}" contains a comma, which separates names.'
        if name.lower() in seen:
            return f'Class name "{name}" appears twice (names must be unique, ignoring case).'
        seen.add(name.lower())
    if not seen:
        return "Give at least one class name."
    return None


def _int_in(value, name, low, high=None, multiple=1):
    try:
        number = int(value)
    except (TypeError, ValueError):
        return f"{name} must be a whole number (got {value!r})."
    if number < low or (high is not None and number > high) or number % multiple:
        rule = f"at least {low}" if high is None else f"between {low} and {high}"
        rule += f", a multiple of {multiple}" if multiple > 1 else ""
        return f"{name} must be {rule} (got {number})."
    return None


def validate(answers):
    """Return a list of readable problems with a cookiecutter context (empty when all is well)."""
    problems = []
    name = answers.get("project_name", "")
    if not name.strip():
        problems.append("The project name must not be blank.")
    elif not name.isprintable():
        problems.append("The project name must not contain control characters (tabs, newlines).")
    elif len(name) > NAME_MAX:
        problems.append(f"The project name must be at most {NAME_MAX} characters (got {len(name)}).")
    slug = answers.get("project_slug", "")
    if not slug or set(slug) - SLUG_CHARS or not slug[0].isalpha() or slug.endswith("-") or "--" in slug:
        problems.append(
            f'The project slug "{slug}" must start with a letter and hold only lowercase letters, '
            "digits and single dashes."
        )
    elif len(slug) > SLUG_MAX:
        problems.append(f"The project slug must be at most {SLUG_MAX} characters (got {len(slug)}).")
    dataset = answers.get("dataset_name", "")
    if not dataset or set(dataset) - DATASET_CHARS or not dataset[0].isalpha():
        problems.append(
            f'The dataset name "{dataset}" must start with a lowercase letter and hold only '
            "lowercase letters, digits and underscores."
        )
    elif len(dataset) > DATASET_MAX:
        problems.append(f"The dataset name must be at most {DATASET_MAX} characters (got {len(dataset)}).")
    problem = class_name_problem(answers.get("class_names", ""))
    if problem:
        problems.append(problem)
    for key, allowed in (("model", MODELS), ("class_mode", CLASS_MODES), ("tracker", TRACKERS)):
        if answers.get(key) not in allowed:
            problems.append(f"{key} must be one of {', '.join(allowed)} (got {answers.get(key)!r}).")
    problems += filter(
        None,
        [
            _int_in(answers.get("input_size"), "The input size", 64, 1920, multiple=32),
            _int_in(answers.get("epochs"), "Epochs", 1),
            _int_in(answers.get("batch_size"), "The batch size", 1),
        ],
    )
    return problems


if __name__ == "__main__":
    # cookiecutter renders the line below before it runs this file. tojson escapes single
    # quotes (not double ones), so the raw string always parses; fmt: skip keeps its quotes.
    ANSWERS = json.loads(r'{{ cookiecutter | tojson }}')  # fmt: skip
    found = validate(ANSWERS)
    for problem in found:
        print(f"error: {problem}", file=sys.stderr)
    sys.exit(1 if found else 0)
