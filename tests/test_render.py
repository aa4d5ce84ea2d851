"""Render the template over a stacked matrix of answers and check what comes out.

The matrix reads its choices from copier.yml, so a new model, class mode or tracker is covered
without touching this file. Each case takes choice number i of every question (cycling the shorter
lists): every choice appears at least once without the full cartesian product.
"""

from itertools import cycle, islice

import pytest
import yaml

from helpers import (
    ANSWERS_FILE,
    COPIER_ONLY,
    choices,
    expected_class_names,
    expected_input_size,
    load_exp,
    render_cookiecutter,
    render_copier,
    ruff_problems,
    static_problems,
    tree_files,
)

AWKWARD_PROJECT_NAME = 'Café "Ünïcode" O\'Brien 検出'
AWKWARD_CLASS_NAMES = ["traffic light", "café", 'say "hi"', "back\\slash"]

# Class-name inputs cycled through the matrix: lists, comma strings, awkward text, one class.
CLASS_NAME_SETS = [
    AWKWARD_CLASS_NAMES,
    "helmet, vest",
    ["pallet"],
    "  hard hat ,safety-vest,  ear muffs  ",
    ["Ünïcode 検出", "it's", "x-ray/2"],
    ["a"],
]
# The long one makes a dataset name long enough to push Exp lines past ruff's line length.
PROJECT_NAMES = [
    AWKWARD_PROJECT_NAME,
    "Widget Detector",
    "x",
    "Northern Forest Wildlife Camera Trap Detector For Endangered Species 2026",
    "Helmet Check 2",
    "O'Neil's \"Best\"",
]


def _matrix():
    questions = {name: choices(name) for name in ("model", "class_mode", "tracker")}
    size = max(len(values) for values in questions.values())
    columns = {name: list(islice(cycle(values), size)) for name, values in questions.items()}
    names = list(islice(cycle(CLASS_NAME_SETS), size))
    titles = list(islice(cycle(PROJECT_NAMES), size))
    cases = []
    for i in range(size):
        data = {name: column[i] for name, column in columns.items()}
        data["project_name"] = titles[i]
        data["class_names"] = names[i]
        if i == 1:
            data.update(input_size=320, epochs=3, batch_size=2)
        cases.append(pytest.param(data, id=f"{i}-{data['model']}-{data['class_mode']}-{data['tracker']}"))
    # The template's own defaults, untouched.
    cases.append(pytest.param({}, id="defaults"))
    # Same model as case 0 but a comma string with the awkward names (no commas among them).
    cases.append(
        pytest.param(
            {"class_names": ", ".join(AWKWARD_CLASS_NAMES), "class_mode": "keep_coco"},
            id="awkward-comma-string-keep_coco",
        )
    )
    return cases


def test_matrix_covers_every_choice():
    cases = [case.values[0] for case in _matrix()]
    for question in ("model", "class_mode", "tracker"):
        assert set(choices(question)) <= {case.get(question) for case in cases}, question


@pytest.mark.parametrize("data", _matrix())
def test_render_matrix(tmp_path, data, yolox_stack):
    project = render_copier(tmp_path / "project", data)

    problems = static_problems(project)
    assert not problems, "\n".join(problems)
    # The project as rendered for these answers (its Exp included) passes its own ruff settings.
    lint = ruff_problems(project)
    assert not lint, "\n".join(lint)

    answers = yaml.safe_load((project / ANSWERS_FILE).read_text(encoding="utf-8"))
    model = answers["model"]
    assert model == data.get("model", model)
    exp_file = project / "exps" / f"{answers['dataset_name']}_{model}.py"
    assert exp_file.is_file(), sorted(p.name for p in (project / "exps").iterdir())
    assert [p.name for p in (project / "exps").glob("*.py")] == [exp_file.name]

    exp = load_exp(project, exp_file, model)

    assert exp["yft_path"] and all(path.startswith(str(project)) for path in exp["yft_path"]), (
        f"`import yft` did not resolve to the project's own package: {exp['yft_path']}"
    )
    ours = expected_class_names(data)
    expected = ours if answers["class_mode"] == "fresh" else exp["coco_class_names"] + ours
    assert len(exp["coco_class_names"]) == 80
    assert exp["class_names"] == expected
    assert exp["num_classes"] == len(exp["class_names"])
    assert (exp["depth"], exp["width"]) == (exp["official_depth"], exp["official_width"])
    assert exp["depthwise"] in (None, model == "yolox_nano")
    size = expected_input_size(data)
    assert exp["input_size"] == [size, size]
    assert exp["test_size"] == [size, size]
    assert exp["max_epoch"] == int(data.get("epochs", 80))


COMPARE_CASES = [
    pytest.param({}, id="defaults"),
    pytest.param(
        {
            "project_name": AWKWARD_PROJECT_NAME,
            "class_names": AWKWARD_CLASS_NAMES,
            "model": "yolox_nano",
            "class_mode": "keep_coco",
            "tracker": "wandb",
            "epochs": 5,
        },
        id="awkward-nano-keep_coco",
    ),
    pytest.param(
        {
            "project_name": "Helmet Check 2",
            # Irregular spacing: copier trims the names, cookiecutter passes the text as typed.
            "class_names": "  hard hat ,vest,  ear muffs  ",
            "model": "yolox_x",
            "tracker": "none",
            "input_size": 320,
            "batch_size": 4,
        },
        id="spacing-x-none",
    ),
]


@pytest.mark.parametrize("data", COMPARE_CASES)
def test_copier_and_cookiecutter_render_the_same_tree(tmp_path, data):
    by_copier = tree_files(render_copier(tmp_path / "copier" / "project", data))
    by_cookiecutter = tree_files(render_cookiecutter(tmp_path / "cookiecutter", data))

    assert ANSWERS_FILE in by_copier
    for name in COPIER_ONLY:
        by_copier.pop(name, None)
    assert ANSWERS_FILE not in by_cookiecutter

    assert sorted(by_copier) == sorted(by_cookiecutter)
    differ = [path for path in by_copier if by_copier[path] != by_cookiecutter[path]]
    details = []
    for path in differ[:5]:
        a = by_copier[path].decode("utf-8", "replace").splitlines()
        b = by_cookiecutter[path].decode("utf-8", "replace").splitlines()
        first = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        details.append(
            f"{path}:{first + 1}:\n  copier:       {a[first : first + 1]}\n"
            f"  cookiecutter: {b[first : first + 1]}"
        )
    assert not differ, "files differ:\n" + "\n".join(details)
