"""Fixtures for the template's tests; the rendering helpers live in helpers.py."""

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "yft tests",
    "GIT_AUTHOR_EMAIL": "yft-tests@example.invalid",
    "GIT_COMMITTER_NAME": "yft tests",
    "GIT_COMMITTER_EMAIL": "yft-tests@example.invalid",
}


@pytest.fixture
def clean_git(monkeypatch):
    """git as on a clean CI machine: no global or system config, an identity from the environment.

    Also keeps a developer's own settings (gpg signing, conflict style, hooks paths) out of the
    tests. Returns the environment to pass to subprocess git calls.
    """
    for key, value in GIT_IDENTITY.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.delenv("GIT_DIR", raising=False)
    monkeypatch.delenv("GIT_WORK_TREE", raising=False)
    return dict(os.environ)


@pytest.fixture
def copier_project(tmp_path):
    """Factory: render a project with copier into tmp_path/project (or `name`); returns its root."""
    from helpers import render_copier

    def render(data=None, name="project", **kwargs):
        return render_copier(tmp_path / name, data or {}, **kwargs)

    return render


@pytest.fixture
def cookiecutter_project(tmp_path):
    """Factory: render a project with cookiecutter under tmp_path/<name>; returns its root."""
    from helpers import render_cookiecutter

    def render(data=None, name="cookiecutter"):
        return render_cookiecutter(tmp_path / name, data or {})

    return render


@pytest.fixture(scope="session")
def yolox_stack(tmp_path_factory):
    """torch, yolox 0.3.0 and the rest, installed once through a generated project's `invoke setup`."""
    from stack import ensure_stack

    # The parent of the base temp folder is shared by all pytest-xdist workers.
    ensure_stack(tmp_path_factory.getbasetemp().parent / "yft-stack")
