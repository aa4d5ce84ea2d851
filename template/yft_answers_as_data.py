"""A Jinja extension that keeps cookiecutter's answers as data (cookiecutter.json `_extensions`).

cookiecutter renders every value of the context as a Jinja template while it collects the
answers: the defaults of cookiecutter.json (which is how `project_slug` derives from
`project_name`), but also whatever replaces them: `key=value` on the command line,
`extra_context=` in Python, and `default_context` in ~/.cookiecutterrc. An answer such as
`{{ 7*7 }}` becomes `49`, and `{{ cycler.__init__.__globals__.os.popen('id').read() }}` runs a
shell command, before any hook could look at it.

This extension sees every template source before Jinja parses it (`preprocess`). While
cookiecutter renders a context value (`cookiecutter.prompt.render_variable` is on the stack),
only the exact strings written in this template's cookiecutter.json are rendered as templates;
any other text with Jinja markup is replaced by a template that prints it unchanged. The files,
file names and hooks of the template are rendered as usual. So under cookiecutter an answer
means what it means under copier, which never renders answers.

Without this module (an old cookiecutter that cannot import a template's local extensions)
cookiecutter stops with "Unable to load extension" instead of rendering anything.
"""

import json
import sys
from itertools import count
from pathlib import Path

from cookiecutter.prompt import render_variable
from jinja2.ext import Extension

HERE = Path(__file__).resolve().parent


def _strings(value):
    """Every string inside a JSON value (keys included)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _template_strings():
    """The Jinja text the template itself wrote into cookiecutter.json."""
    with open(HERE / "cookiecutter.json", encoding="utf-8") as f:
        return frozenset(_strings(json.load(f)))


def _rendering_a_context_value():
    """True when cookiecutter is rendering a value of the context (a default or an answer)."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code is render_variable.__code__:
            return True
        frame = frame.f_back
    return False


class AnswersAsData(Extension):
    """Answers containing Jinja markup render as the text they are, never as templates."""

    _names = count()

    def __init__(self, environment):
        super().__init__(environment)
        self.own = _template_strings()
        env = environment
        self.markers = tuple(
            m
            for m in (
                env.block_start_string,
                env.variable_start_string,
                env.comment_start_string,
                env.line_statement_prefix,
                env.line_comment_prefix,
            )
            if m
        )

    def preprocess(self, source, name, filename=None):
        if name is not None or not any(m in source for m in self.markers):
            return source  # a template file, or text Jinja would print unchanged anyway
        if source in self.own or not _rendering_a_context_value():
            return source  # the template's own defaults, file names and hooks
        # The answer itself becomes a global the replacement template prints.
        key = f"_yft_answer_{next(self._names)}"
        self.environment.globals[key] = source
        return "{{ " + key + " }}"
