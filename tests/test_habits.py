"""A generated project ships its own habits: pre-commit hooks that pass as generated and catch
what they are for, and a CI workflow that is valid and runs setup before the tests.

The hooks install ruff and pre-commit-hooks from the package index into pre-commit's cache
(PRE_COMMIT_HOME, ~/.cache/pre-commit by default), once per machine.
"""

import os
import re
import shutil
import subprocess
import sys

import pytest
import tomllib
import yaml

from helpers import render_copier

WORKFLOW = ".github/workflows/ci.yml"


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return render_copier(tmp_path_factory.mktemp("habits") / "project", {"model": "yolox_nano"})


def git(cwd, *args):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True)


def pre_commit(project):
    env = {k: v for k, v in os.environ.items() if k != "SKIP"}
    return subprocess.run(
        [sys.executable, "-m", "pre_commit", "run", "--all-files", "--color", "never"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


# ------------------------------------------------------------------ pre-commit
def test_hooks_install_from_the_package_index_only(project):
    config = yaml.safe_load((project / ".pre-commit-config.yaml").read_text(encoding="utf-8"))
    hooks = [hook for repo in config["repos"] for hook in repo["hooks"]]
    assert [repo["repo"] for repo in config["repos"]] == ["local"]
    assert {hook["language"] for hook in hooks} == {"python"}
    ids = {hook["id"] for hook in hooks}
    assert {
        "ruff-check",
        "ruff-format",
        "trailing-whitespace",
        "end-of-file-fixer",
        "check-yaml",
        "check-toml",
        "check-added-large-files",
        "check-merge-conflict",
    } <= ids
    # The hooks' ruff is the one the project's dev extra installs.
    dev = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    pinned = {dep for hook in hooks for dep in hook.get("additional_dependencies", ()) if "ruff" in dep}
    assert pinned and pinned <= set(dev["optional-dependencies"]["dev"])


def test_pre_commit_passes_on_a_fresh_project_and_catches_what_it_is_for(tmp_path, project, clean_git):
    work = tmp_path / "work"
    shutil.copytree(project, work, symlinks=True)
    git(work, "init", "-q")
    git(work, "add", "-A")
    result = pre_commit(work)
    assert result.returncode == 0, result.stdout + result.stderr

    # What `copier update --conflict inline` leaves behind, and a checkpoint added by mistake.
    exp = next((work / "exps").glob("*.py"))
    text = exp.read_text(encoding="utf-8")
    exp.write_text(
        text + "<<<<<<< before updating\nMAX_EPOCH = 80\n=======\nMAX_EPOCH = 120\n>>>>>>> after updating\n",
        encoding="utf-8",
    )
    (work / "model.ckpt").write_bytes(os.urandom(2 * 1024 * 1024))
    # And code the linter rejects: an unused import.
    (work / "yft" / "scratch.py").write_text("import os\n", encoding="utf-8")
    git(work, "add", "-A")
    result = pre_commit(work)
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert re.search(rf"{re.escape('exps/' + exp.name)}:\d+: Merge conflict string '<<<<<<<'", out), out
    assert re.search(r"model\.ckpt \(2048 KB\) exceeds 1024 KB", out), out
    assert re.search(r"^ruff check .*Failed$", out, re.MULTILINE), out
    assert (work / "yft" / "scratch.py").read_text(encoding="utf-8") == "", "ruff's fix did not run"


# ------------------------------------------------------------------ CI workflow
def check_workflow_schema(path):
    """Validate a workflow file against GitHub's schema (shipped with check-jsonschema)."""
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_ci_workflow_matches_githubs_schema(tmp_path, project):
    result = check_workflow_schema(project / WORKFLOW)
    assert result.returncode == 0, result.stdout + result.stderr

    # The validator does reject a broken workflow (a step that both uses an action and runs).
    broken = yaml.safe_load((project / WORKFLOW).read_text(encoding="utf-8"))
    broken["jobs"]["test"]["steps"][0]["run"] = "echo hi"
    (tmp_path / "broken.yml").write_text(yaml.safe_dump(broken), encoding="utf-8")
    assert check_workflow_schema(tmp_path / "broken.yml").returncode != 0


def test_ci_workflow_sets_up_python_with_pip_cache_then_runs_setup_and_tests(project):
    workflow = yaml.safe_load((project / WORKFLOW).read_text(encoding="utf-8"))
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert {"push", "pull_request"} <= set(triggers)
    jobs = workflow["jobs"]
    assert set(jobs) == {"lint", "test"}
    requires = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "requires-python"
    ]
    for name, job in jobs.items():
        steps = job["steps"]
        assert job["runs-on"].startswith("ubuntu-"), name
        assert steps[0]["uses"].startswith("actions/checkout@"), name
        for step in steps:
            if "uses" in step:
                assert re.fullmatch(r"[\w-]+/[\w-]+@v\d+", step["uses"]), step["uses"]
        setup = next(step for step in steps if step.get("uses", "").startswith("actions/setup-python@"))
        assert setup["with"]["cache"] == "pip", name
        assert (project / setup["with"]["cache-dependency-path"]).is_file(), name
        major, minor = map(int, str(setup["with"]["python-version"]).split("."))
        assert requires == ">=3.10" and (major, minor) >= (3, 10), (requires, setup["with"])

    def runs(job):
        return [step.get("run", "") for step in jobs[job]["steps"]]

    assert any("pre-commit run --all-files" in run for run in runs("lint"))
    test_runs = runs("test")
    setup_at = next(i for i, run in enumerate(test_runs) if "invoke setup" in run)
    tests_at = next(i for i, run in enumerate(test_runs) if "invoke test" in run)
    assert setup_at < tests_at
    # torch's CPU build goes in before `invoke setup`, which keeps an installed torch.
    torch_at = next(i for i, run in enumerate(test_runs) if "install torch" in run)
    assert torch_at < setup_at and "/whl/cpu" in test_runs[torch_at]
