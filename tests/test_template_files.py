"""Plain template files must stay plain: copier and cookiecutter render every file through Jinja,
so a stray `{{`, `{%` or `{#` in Python code (a dict in an f-string, a comment) breaks rendering
or silently changes the code. Only the files listed here may carry Jinja."""

from helpers import PROJECT_TEMPLATE

JINJA_FILES = {"README.md", "pyproject.toml", "{{cookiecutter._answers_file}}"}
MARKERS = ("{{", "{%", "{#")


def test_only_the_answer_carrying_files_use_jinja():
    offenders = []
    for path in sorted(PROJECT_TEMPLATE.rglob("*")):
        rel = path.relative_to(PROJECT_TEMPLATE)
        if not path.is_file() or "__pycache__" in rel.parts:
            continue
        if str(rel) in JINJA_FILES or rel.parts[0] == "exps":
            continue
        text = path.read_bytes().decode("utf-8", errors="replace")
        for number, line in enumerate(text.splitlines(), start=1):
            if any(marker in line for marker in MARKERS):
                offenders.append(f"{rel}:{number}: {line.strip()[:80]}")
    assert not offenders, "Jinja markers in plain files:\n" + "\n".join(offenders)
