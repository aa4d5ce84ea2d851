"""Every invoke task is documented: a docstring for `invoke --list` and help for each option."""

import inspect

from invoke import Task

import tasks


def all_tasks():
    return [obj for obj in vars(tasks).values() if isinstance(obj, Task)]


def test_every_task_has_help_for_every_option():
    found = all_tasks()
    assert len(found) >= 8
    for task in found:
        assert (task.__doc__ or "").strip(), f"{task.name}: no docstring"
        params = [p for p in inspect.signature(task.body).parameters if p != "c"]
        undocumented = [p for p in params if p not in task.help and p.rstrip("_") not in task.help]
        assert not undocumented, f"{task.name}: no help for {undocumented}"
