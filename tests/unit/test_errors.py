"""Every exception EchoCenter defines is in errors.py's tree, and the tree drawn there names each of them."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import echocenter
from echocenter import errors

# The emulator stands in for Feishu and answers in Feishu's shape; its errors are not EchoCenter's.
OUTSIDE = ("echocenter.emulator", "echocenter.db.migrations")


def _defined_exceptions() -> list[type[BaseException]]:
    found = []
    for module_info in pkgutil.walk_packages(echocenter.__path__, "echocenter."):
        if module_info.name.startswith(OUTSIDE) or module_info.name.endswith("__main__"):
            continue
        module = importlib.import_module(module_info.name)
        for _, value in inspect.getmembers(module, inspect.isclass):
            if issubclass(value, BaseException) and value.__module__ == module.__name__:
                found.append(value)
    return found


def test_every_exception_is_rooted_in_errors_py() -> None:
    defined = _defined_exceptions()
    assert {c.__name__ for c in defined} >= {"FeishuError", "AgentOffline", "OutboundError"}  # the walk works
    outside = [f"{c.__module__}.{c.__name__}" for c in defined if not issubclass(c, errors.EchoCenterError)]
    assert outside == []


def test_the_drawn_tree_names_every_public_exception() -> None:
    drawing = errors.__doc__ or ""
    public = [c.__name__ for c in _defined_exceptions() if not c.__name__.startswith("_")]
    assert [name for name in public if f" {name} " not in drawing] == []
