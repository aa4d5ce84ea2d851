"""`copier update` keeps the user's edits, brings template changes, and shows real conflicts.

The template under test is the working tree as it is (uncommitted and untracked files included,
as `copier copy -r HEAD` would render it), copied into a throwaway git repo and tagged v0.1.0.
A second commit, tagged v0.2.0, changes the template: one change the user never touched, and one
that collides with a user edit. A project generated from v0.1.0 and edited by its user is then
updated to HEAD (v0.2.0).
"""

import shutil
import subprocess
from pathlib import Path

import copier
import yaml

from helpers import ANSWERS_FILE, PROJECT_TEMPLATE, TEMPLATE_ROOT, render_copier

TEMPLATE_CHANGE = "template v0.2.0: a line the user never touched"
TEMPLATE_CONFLICT = "template v0.2.0: a line where the user wrote their own"
USER_CONFLICT = "user: my own line at the end"


def git(cwd, *args, env=None):
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


def template_files(root: Path) -> list[str]:
    """The template's files as git sees the working tree: tracked plus untracked-not-ignored.

    Falls back to every file when `root` is not a git checkout (an unpacked sdist, say).
    """
    try:
        listed = git(root, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
        paths = [p for p in listed.split("\0") if p]
    except (subprocess.CalledProcessError, FileNotFoundError):
        paths = [p.relative_to(root).as_posix() for p in root.rglob("*") if ".git" not in p.parts]
    skip = {"__pycache__", ".pytest_cache", ".git"}
    return [p for p in paths if not skip & set(Path(p).parts) and not p.endswith(".pyc")]


def copy_template(dest: Path) -> None:
    """Copy the working tree's template files (links as links; deleted tracked files skipped)."""
    for rel in template_files(TEMPLATE_ROOT):
        src = TEMPLATE_ROOT / rel
        if not src.is_symlink() and not src.is_file():
            continue  # tracked but deleted in the working tree, or a folder (submodule)
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target, follow_symlinks=False)


def append_line(path: Path, line: str) -> None:
    text = path.read_text(encoding="utf-8")
    if text and not text.endswith("\n"):
        text += "\n"
    path.write_text(text + line + "\n", encoding="utf-8")


def plain_template_file(exclude) -> str:
    """A project-template file with no Jinja in it (so an appended line renders as written)."""
    for rel in ("README.md", "yft/exp.py", "yft/__init__.py"):
        path = PROJECT_TEMPLATE / rel
        if rel not in exclude and path.is_file():
            text = path.read_text(encoding="utf-8")
            if not any(marker in text for marker in ("{{", "{%", "{#")):
                return rel
    for path in sorted(PROJECT_TEMPLATE.rglob("*.py")):
        rel = path.relative_to(PROJECT_TEMPLATE).as_posix()
        text = path.read_text(encoding="utf-8")
        if rel not in exclude and "{" not in rel and not any(m in text for m in ("{{", "{%", "{#")):
            return rel
    raise AssertionError("no plain file in the project template to change")


def template_repo_at_v010(repo, env):
    """A git repo of the template's working tree as it is, committed and tagged v0.1.0."""
    copy_template(repo)
    git(repo, "init", "-q", env=env)
    git(repo, "add", "-A", "-f", env=env)
    git(repo, "commit", "-q", "-m", "v0.1.0", env=env)
    git(repo, "tag", "v0.1.0", env=env)
    return repo


def test_update_keeps_user_edits_and_marks_conflicts(tmp_path, clean_git):
    env = clean_git
    # ---------------- the template repo: v0.1.0 = the working tree as it is
    repo = template_repo_at_v010(tmp_path / "template", env)

    # ---------------- the project, generated from v0.1.0 and committed by its user
    project = render_copier(
        tmp_path / "project",
        {"project_name": "Update Probe", "class_names": ["helmet", "vest"], "epochs": 80},
        vcs_ref="v0.1.0",
        src=repo,
    )
    answers = yaml.safe_load((project / ANSWERS_FILE).read_text(encoding="utf-8"))
    assert answers["_commit"] == "v0.1.0"
    assert answers["_src_path"] == str(repo.resolve())
    exp_rel = f"exps/{answers['dataset_name']}_{answers['model']}.py"
    conflict_rel = "tasks.py" if (project / "tasks.py").is_file() else "yft/exp.py"
    clean_rel = plain_template_file(exclude={conflict_rel})
    git(project, "init", "-q", env=env)
    git(project, "add", "-A", env=env)
    git(project, "commit", "-q", "-m", "generated", env=env)

    # ---------------- the template moves on: v0.2.0
    append_line(repo / "template" / PROJECT_TEMPLATE.name / clean_rel, f"# {TEMPLATE_CHANGE}")
    append_line(repo / "template" / PROJECT_TEMPLATE.name / conflict_rel, f"# {TEMPLATE_CONFLICT}")
    git(repo, "commit", "-q", "-am", "v0.2.0", env=env)
    git(repo, "tag", "v0.2.0", env=env)

    # ---------------- the user edits their project
    exp_file = project / exp_rel
    exp_text = exp_file.read_text(encoding="utf-8")
    assert exp_text.count("self.max_epoch = 80\n") == 1
    exp_file.write_text(exp_text.replace("self.max_epoch = 80\n", "self.max_epoch = 120\n"), encoding="utf-8")
    append_line(project / conflict_rel, f"# {USER_CONFLICT}")
    git(project, "commit", "-q", "-am", "my edits", env=env)

    # ---------------- update to HEAD (v0.2.0)
    copier.run_update(
        dst_path=str(project),
        defaults=True,
        overwrite=True,
        unsafe=False,
        conflict="inline",
        vcs_ref="HEAD",
        quiet=True,
    )

    answers = yaml.safe_load((project / ANSWERS_FILE).read_text(encoding="utf-8"))
    assert answers["_commit"] == "v0.2.0"
    assert answers["class_names"] == ["helmet", "vest"]

    # The user's edit survives, untouched by conflict markers.
    exp_text = exp_file.read_text(encoding="utf-8")
    assert "self.max_epoch = 120\n" in exp_text
    assert "self.max_epoch = 80\n" not in exp_text
    assert "<<<<<<<" not in exp_text

    # The template change the user never touched arrives cleanly.
    clean_text = (project / clean_rel).read_text(encoding="utf-8")
    assert f"# {TEMPLATE_CHANGE}\n" in clean_text
    assert "<<<<<<<" not in clean_text

    # Both sides of the collision are kept, between inline conflict markers.
    conflict_text = (project / conflict_rel).read_text(encoding="utf-8")
    assert "<<<<<<<" in conflict_text and ">>>>>>>" in conflict_text, conflict_text[-600:]
    start = conflict_text.index("<<<<<<<")
    end = conflict_text.index(">>>>>>>", start)
    hunk = conflict_text[start:end]
    assert f"# {USER_CONFLICT}" in hunk
    assert f"# {TEMPLATE_CONFLICT}" in hunk
    assert "=======" in hunk

    # Nothing else was touched: the only changed paths are the ones we expect.
    changed = {line[3:] for line in git(project, "status", "--porcelain", env=env).splitlines()}
    assert changed <= {ANSWERS_FILE, clean_rel, conflict_rel}, changed


def test_update_to_the_same_version_changes_nothing(tmp_path, clean_git):
    """Rendering is deterministic: updating to the commit a project came from leaves it clean."""
    env = clean_git
    repo = template_repo_at_v010(tmp_path / "template", env)
    data = {
        "project_name": 'Café "Ünïcode" O\'Brien 検出',
        "class_names": ["traffic light", "café", 'say "hi"', "back\\slash"],
        "class_mode": "keep_coco",
        "model": "yolox_nano",
    }
    project = render_copier(tmp_path / "project", data, vcs_ref="v0.1.0", src=repo)
    git(project, "init", "-q", env=env)
    git(project, "add", "-A", env=env)
    git(project, "commit", "-q", "-m", "generated", env=env)

    copier.run_update(
        dst_path=str(project),
        defaults=True,
        overwrite=True,
        unsafe=False,
        conflict="inline",
        vcs_ref="HEAD",
        quiet=True,
    )

    assert git(project, "status", "--porcelain", env=env) == ""
