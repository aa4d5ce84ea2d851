"""Bad answers are refused by both front doors, with the same verdict.

copier checks the `validator:` expressions of copier.yml; cookiecutter runs
hooks/pre_gen_project.py, whose `validate()` holds the same rules in Python. Each bad answer
below must be refused by copier (a ValueError naming the question, before anything is written)
and reported by `validate()` on the context cookiecutter would build.
"""

import importlib.util

import pytest
from cookiecutter.exceptions import FailedHookException
from cookiecutter.generate import generate_context
from cookiecutter.main import _patch_import_path_for_repo
from cookiecutter.prompt import prompt_for_config

from helpers import COOKIECUTTER_JSON, TEMPLATE_ROOT, render_cookiecutter, render_copier

_spec = importlib.util.spec_from_file_location(
    "pre_gen_project", TEMPLATE_ROOT / "hooks" / "pre_gen_project.py"
)
hook = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(hook)


def cookiecutter_context(data):
    """The context cookiecutter hands the hook for `data` (no input; derived defaults rendered).

    Text answers go through cookiecutter's own defaulting; values cookiecutter cannot take on
    its command line (lists, ints) are put in afterwards, as the hook would see them if it did.
    """
    text = {k: v for k, v in data.items() if isinstance(v, str)}
    context = generate_context(context_file=str(COOKIECUTTER_JSON), extra_context=text)
    # As cookiecutter does, so the template's own Jinja extension imports.
    with _patch_import_path_for_repo(str(COOKIECUTTER_JSON.parent)):
        answers = dict(prompt_for_config(context, no_input=True))
    answers.update({k: v for k, v in data.items() if not isinstance(v, str)})
    return answers


# (id, answers, question copier must name, text both messages must contain, cookiecutter can say it)
BAD_ANSWERS = [
    ("blank-class-name", {"class_names": "a, , b"}, "class_names", "number 2 is blank", True),
    ("blank-class-in-list", {"class_names": ["a", " "]}, "class_names", "number 2 is blank", False),
    (
        "duplicate-ignoring-case",
        {"class_names": "Helmet, vest, helmet"},
        "class_names",
        "appears twice",
        True,
    ),
    ("duplicate-in-list", {"class_names": ["Cat", "cat"]}, "class_names", "appears twice", False),
    ("comma-in-list-item", {"class_names": ["a,b", "c"]}, "class_names", "contains a comma", False),
    ("not-text", {"class_names": [1, 2]}, "class_names", "is not text", False),
    ("empty-list", {"class_names": []}, "class_names", "at least one class name", False),
    ("mapping", {"class_names": {"a": 1}}, "class_names", "must be a list", False),
    ("number", {"class_names": 5}, "class_names", "must be a list", False),
    ("control-char-in-class", {"class_names": ["a\tb"]}, "class_names", "control character", False),
    ("input-size-100", {"input_size": 100}, "input_size", "(got 100)", True),
    ("input-size-too-big", {"input_size": 1952}, "input_size", "(got 1952)", True),
    ("epochs-0", {"epochs": 0}, "epochs", "Epochs must be", True),
    ("batch-size-0", {"batch_size": 0}, "batch_size", "batch size must be", True),
    ("slug-with-space", {"project_slug": "My Proj"}, "project_slug", '"My Proj"', True),
    ("slug-double-dash", {"project_slug": "my--proj"}, "project_slug", '"my--proj"', True),
    ("slug-trailing-dash", {"project_slug": "proj-"}, "project_slug", '"proj-"', True),
    ("dataset-leading-digit", {"dataset_name": "1data"}, "dataset_name", '"1data"', True),
    ("dataset-with-dash", {"dataset_name": "my-data"}, "dataset_name", '"my-data"', True),
    ("project-name-newline", {"project_name": "My\nProject"}, "project_name", "control characters", True),
    ("project-name-blank", {"project_name": "   "}, "project_name", "must not be blank", True),
    # 300 characters used to end in "OSError: File name too long" (the slug became a folder name).
    (
        "project-name-300",
        {"project_name": "x" * 300},
        "project_name",
        "at most 100 characters (got 300)",
        True,
    ),
    ("slug-65", {"project_slug": "a" * 65}, "project_slug", "at most 64 characters (got 65)", True),
    ("dataset-65", {"dataset_name": "a" * 65}, "dataset_name", "at most 64 characters (got 65)", True),
    (
        "class-name-101",
        {"class_names": ["ok", "c" * 101]},
        "class_names",
        "number 2 is longer than 100",
        False,
    ),
    (
        "class-name-101-text",
        {"class_names": "ok, " + "c" * 101},
        "class_names",
        "number 2 is longer than 100",
        True,
    ),
]


@pytest.mark.parametrize(
    "data, question, message",
    [pytest.param(data, question, message, id=case) for case, data, question, message, _ in BAD_ANSWERS],
)
def test_copier_refuses(tmp_path, data, question, message):
    dest = tmp_path / "project"
    with pytest.raises(ValueError, match=f"question '{question}'") as error:
        render_copier(dest, data)
    assert message in str(error.value)
    assert not dest.exists() or not any(dest.iterdir()), "copier wrote files for bad answers"


@pytest.mark.parametrize(
    "data, message",
    [pytest.param(data, message, id=case) for case, data, _, message, _ in BAD_ANSWERS],
)
def test_hook_validate_refuses(data, message):
    problems = hook.validate(cookiecutter_context(data))
    assert problems, f"validate() accepted {data!r}"
    assert any(message in problem for problem in problems), problems


def test_defaults_pass_both(copier_project, cookiecutter_project):
    assert hook.validate(cookiecutter_context({})) == []
    assert cookiecutter_project().is_dir()
    project = copier_project()
    assert (project / ".copier-answers.yml").is_file()


GOOD_ANSWERS = [
    {"class_names": ["traffic light", "café", 'say "hi"', "back\\slash"]},
    {"project_name": 'Café "Ünïcode" O\'Brien 検出', "class_names": "a,b , c"},
    {"class_names": "only", "input_size": 64, "epochs": 1, "batch_size": 1},
    {"input_size": 1920, "project_slug": "a1-b2", "dataset_name": "a_1"},
    {"project_name": "Rocket \U0001f680", "class_names": ["\U0001f680 rocket", "\U0001f6f8"]},
    {
        "project_name": "n" * 100,
        "project_slug": "s" * 64,
        "dataset_name": "d" * 64,
        "class_names": ["c" * 100],
    },
    {"project_name": "Long " * 19 + "Name"},  # the derived slug is cut to 64 characters
    {"class_names": ["{{ 7*7 }}", "{% raw %}"], "project_name": "P {# x #}"},  # answers are data
]


@pytest.mark.parametrize("data", GOOD_ANSWERS, ids=range(len(GOOD_ANSWERS)))
def test_good_answers_pass_both(tmp_path, data):
    assert hook.validate(cookiecutter_context(data)) == []
    render_copier(tmp_path / "project", data)


@pytest.mark.parametrize(
    "data, message",
    [pytest.param(data, message, id=case) for case, data, _, message, cc in BAD_ANSWERS if cc],
)
def test_cookiecutter_refuses_and_writes_nothing(tmp_path, capfd, data, message):
    out = tmp_path / "out"
    with pytest.raises(FailedHookException):
        render_cookiecutter(out, data)
    assert not out.exists() or not any(out.iterdir()), "cookiecutter left a project behind"
    assert message in capfd.readouterr().err


# Borderline answers: whichever the verdict, both front doors must give the same one.
BORDERLINE = [
    {"class_names": ["a\n", "b"]},
    {"class_names": "a\t, b"},
    {"class_names": ["  x  ", "y"]},
    {"class_names": "a, b,"},
    {"class_names": ["a", "A "]},
    {"class_names": [None]},
    {"class_names": [True, "b"]},
    {"class_names": "é, É"},
    {"project_name": "Name\u00a0with nbsp"},
    {"project_name": " padded "},
    {"project_slug": "a"},
    {"project_slug": "a-1"},
    {"dataset_name": "a__b"},
    {"dataset_name": "_a"},
    {"input_size": 96},
]


@pytest.mark.parametrize("data", BORDERLINE, ids=[repr(d) for d in BORDERLINE])
def test_same_verdict(tmp_path, data):
    try:
        render_copier(tmp_path / "project", data)
        copier_ok, copier_says = True, ""
    except ValueError as error:
        copier_ok, copier_says = False, str(error)
    problems = hook.validate(cookiecutter_context(data))
    verdicts = f"copier: {copier_says or 'accepted'}; validate(): {problems or 'accepted'}"
    assert copier_ok == (not problems), verdicts
