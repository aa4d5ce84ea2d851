"""Answers are data under both front doors: Jinja markup in an answer is never evaluated.

cookiecutter renders every context value as a template, including the values that replace the
defaults (command line, extra_context, ~/.cookiecutterrc); template/yft_answers_as_data.py turns
those into literal text. copier never renders answers. Both must write the text as typed, run
nothing, and (for answers both accept) write identical trees.
"""

import os
import subprocess
import sys

import pytest
import yaml
from cookiecutter.main import cookiecutter

from helpers import COPIER_ONLY, TEMPLATE_ROOT, render_cookiecutter, render_copier, tree_files

SEVEN = "{{ 7*7 }}"
# Runs `touch PWNED` in the working folder if the text is ever rendered as a template.
PWNED = "{{ cycler.__init__.__globals__.os.popen('touch PWNED').read() }}"
STATEMENT = "{% for i in range(3) %}{{ i }}{% endfor %}"
PROJECT_NAME = "Probe {# comment #} {% raw %}raw"
CLASSES = [SEVEN, PWNED, STATEMENT]


def _assert_literal(project):
    exp = next((project / "exps").glob("*.py")).read_text(encoding="utf-8")
    readme = (project / "README.md").read_text(encoding="utf-8")
    for name in CLASSES:
        assert f'    "{name}",' in exp, f"class name {name!r} not in the Exp as typed"
        assert f"`{name}`" in readme
    assert "# " + PROJECT_NAME in readme
    assert "`49`" not in readme and "012" not in readme


def test_cookiecutter_command_line_answers_run_nothing(tmp_path):
    """`cookiecutter ... class_names=...` on the command line: no file PWNED, no class 49."""
    config = tmp_path / "cookiecutterrc.yaml"
    config.write_text(
        yaml.safe_dump({"cookiecutters_dir": str(tmp_path / "cc"), "replay_dir": str(tmp_path / "replay")})
    )
    work = tmp_path / "work"
    work.mkdir()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cookiecutter",
            str(TEMPLATE_ROOT),
            "--directory",
            "template",
            "--no-input",
            "--config-file",
            str(config),
            "--output-dir",
            str(work),
            f"class_names={', '.join(CLASSES)}",
            f"project_name={PROJECT_NAME}",
        ],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=300,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert not (work / "PWNED").exists(), "an answer ran a shell command"
    assert not (TEMPLATE_ROOT / "PWNED").exists()
    _assert_literal(work / "probe-comment-raw-raw")


def test_cookiecutterrc_default_context_runs_nothing(tmp_path, monkeypatch):
    """Values from the user's config (default_context) are answers too."""
    monkeypatch.chdir(tmp_path)
    project = cookiecutter(
        str(TEMPLATE_ROOT),
        no_input=True,
        directory="template",
        output_dir=str(tmp_path / "out"),
        default_config={
            "cookiecutters_dir": str(tmp_path / "cc"),
            "replay_dir": str(tmp_path / "r"),
            "default_context": {"class_names": ", ".join(CLASSES), "project_name": PROJECT_NAME},
        },
    )
    assert not (tmp_path / "PWNED").exists(), "an answer ran a shell command"
    _assert_literal(tmp_path / "out" / os.path.basename(project))


def test_both_front_doors_write_jinja_answers_as_typed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = {"project_name": PROJECT_NAME, "class_names": CLASSES}
    by_copier = tree_files(render_copier(tmp_path / "copier" / "project", data))
    cookiecutter_root = render_cookiecutter(tmp_path / "cookiecutter", data)
    by_cookiecutter = tree_files(cookiecutter_root)
    assert not (tmp_path / "PWNED").exists(), "an answer ran a shell command"
    _assert_literal(cookiecutter_root)
    for name in COPIER_ONLY:
        by_copier.pop(name, None)
    assert sorted(by_copier) == sorted(by_cookiecutter)
    assert [p for p in by_copier if by_copier[p] != by_cookiecutter[p]] == []


def test_template_defaults_are_still_rendered(tmp_path):
    """The extension only stops answers: cookiecutter.json's own derived defaults still work."""
    project = render_cookiecutter(tmp_path, {"project_name": "Forklift {{ 7*7 }} Spotter"})
    assert project.name == "forklift-7-7-spotter"
    assert (project / "exps" / "forklift_7_7_spotter_yolox_s.py").is_file()


@pytest.mark.parametrize("name", ["Rocket \U0001f680 Finder", "\U0001f6f8 UFO \U0001f47d"])
def test_emoji_names_render_the_same(tmp_path, name):
    """Characters outside the BMP: copier used to write them as lone surrogates and crash."""
    data = {"project_name": name, "class_names": ["\U0001f680 rocket", "\U0001f6f8", "plain"]}
    by_copier = tree_files(render_copier(tmp_path / "copier" / "project", data))
    by_cookiecutter = tree_files(render_cookiecutter(tmp_path / "cookiecutter", data))
    readme = by_copier["README.md"].decode("utf-8")
    assert f"# {name}" in readme and "`\U0001f680 rocket`" in readme
    answers = yaml.safe_load(by_copier[".copier-answers.yml"])
    assert answers["project_name"] == name
    for key in COPIER_ONLY:
        by_copier.pop(key, None)
    assert [p for p in by_copier if by_copier.get(p) != by_cookiecutter.get(p)] == []


def test_long_project_name_gets_a_short_slug(tmp_path):
    """A long (allowed) name derives a slug cut to 64 characters under both front doors."""
    name = "Very " * 19 + "Long"  # 99 characters
    by_copier = render_copier(tmp_path / "copier" / "project", {"project_name": name})
    answers = yaml.safe_load((by_copier / ".copier-answers.yml").read_text(encoding="utf-8"))
    assert len(answers["project_slug"]) <= 64 and not answers["project_slug"].endswith("-")
    by_cookiecutter = render_cookiecutter(tmp_path / "cookiecutter", {"project_name": name})
    assert by_cookiecutter.name == answers["project_slug"]
