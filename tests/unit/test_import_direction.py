"""Imports between EchoCenter's packages point one way: down the layers below (DESIGN.md, "Dependency
direction"). Pure AST: no module is imported, so a cycle cannot hide behind import order.

A node is a package under src/echocenter (``feishu``, ``approvals``…) or a top-level module (``settings``,
``contracts``…). Every import counts: at module level, inside functions, and under ``TYPE_CHECKING`` (a
type-only import still couples the two packages, and mypy follows it). A package may import only packages
in lower layers; two packages in one layer are peers that know nothing of each other.

Where routers sit: each domain keeps its router in its own package (``approvals/api.py``,
``connectors/api.py``, the HTTP callback ``feishu/webhook.py``), so a package sits as high as its router
needs. That works because what routers share sits low and imports no domain: ``api/deps.py`` (RuntimeDep,
SessionDep, ``from_app_state``) and ``api/error_docs.py``; the caller's identity is auth's own
(``auth/deps.py``); each domain declares the deps of its own services (``feishu/deps.py``: BridgeDep…). The
one router that reads every domain, ``GET /metrics``, is the app's own (``metrics_api.py``). The connector
admin API calls the bridge, the doctor and the outbound client, so ``connectors`` sits above ``feishu``;
the Feishu layer reads connector rows itself (``feishu/connector_config.py``).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "echocenter"

# Bottom first. A new package or top-level module must be placed here (the test says so).
LAYERS: list[set[str]] = [
    # what every layer may use: errors, logs, metrics registry, secrets box, the rules for credentials,
    # the contracts between layers, the ORM and migrations
    {"errors", "logging_setup", "metrics", "secretbox", "credential_rules", "contracts", "filemodes", "db"},
    {"taskset"},  # the one task-set holder (app, bridge, long connection)
    {"settings", "fd_limits", "lean_websocket"},
    {"runtime"},  # settings, engine, sessions, secret box, the pooled HTTP client
    {"cluster", "integration_logs"},  # instances, event bus, presence; the integration log
    {"api"},  # HTTP plumbing every router shares: deps, error docs, middleware, health, docs, web page
    {"auth"},  # users, passwords, tokens, CurrentUser / CurrentAdmin
    {"feishu"},  # transports, inbound pipeline, inbox/outbox (durable queues), Open API, apps registry
    {"agents", "connectors", "emulator"},  # agent sockets; connector admin (verify, doctor); the emulator
    {"approvals"},  # the approval state machine, cards, delivery; decides card clicks
    {"butler"},  # conversations, brains, the agent loop (asks approvals)
    {"metrics_api", "doctor_cli"},
    {"app"},  # wires everything in a straight line
    {"demo"},
    {"cli"},
    {"__init__", "__main__"},
]


def _imported_modules(tree: ast.AST, package: tuple[str, ...]) -> Iterator[str]:
    """Absolute names of what ``tree`` imports; ``package`` is its own, e.g. ("echocenter", "feishu")."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against this file's package
                base = ".".join((*package[: len(package) - node.level + 1], *([base] if base else [])))
            yield base
            if base == "echocenter":  # ``from echocenter import metrics``: the names are modules
                yield from (f"echocenter.{alias.name}" for alias in node.names)


def package_imports(src: Path = SRC) -> dict[str, dict[str, set[str]]]:
    """importing node -> imported node -> the files (relative to src) that do it."""
    graph: dict[str, dict[str, set[str]]] = {}
    for path in sorted(src.rglob("*.py")):
        if "migrations" in path.parts:  # frozen history: Alembic's scripts import only db
            continue
        relative = path.relative_to(src)
        here = relative.parts[0].removesuffix(".py")
        graph.setdefault(here, {})
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for module in _imported_modules(tree, ("echocenter", *relative.parts[:-1])):
            parts = module.split(".")
            if parts[0] == "echocenter" and len(parts) > 1 and parts[1] != here:
                graph[here].setdefault(parts[1], set()).add(str(path.relative_to(src)))
    return graph


def upward_imports(graph: Mapping[str, Mapping[str, set[str]]], layers: list[set[str]]) -> list[str]:
    """Every import of a package in the same or a higher layer, as a readable line."""
    rank = {name: i for i, layer in enumerate(layers) for name in layer}
    found = []
    for importer, imported in sorted(graph.items()):
        for target, files in sorted(imported.items()):
            if rank.get(target, -1) >= rank.get(importer, -1):
                found.append(
                    f"{importer} (layer {rank.get(importer)}) imports {target} (layer "
                    f"{rank.get(target)}) in {', '.join(sorted(files))}"
                )
    return found


def cycles(graph: Mapping[str, Mapping[str, set[str]]]) -> list[list[str]]:
    """The package cycles (strongly connected components of more than one package)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph.get(node, {}):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while (member := stack.pop()) != node:
                component.append(member)
            if component:
                found.append(sorted([node, *component]))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_two_packages_import_each_other() -> None:
    assert cycles(package_imports()) == []


def test_every_import_points_down_the_layers() -> None:
    assert upward_imports(package_imports(), LAYERS) == []


def test_every_package_has_its_layer() -> None:
    placed = set().union(*LAYERS)
    assert set(package_imports()) - placed == set(), "place the new package in LAYERS (and DESIGN.md)"
    assert placed - set(package_imports()) == set(), "LAYERS names a package that no longer exists"


def test_the_checks_see_an_upward_import_and_a_cycle() -> None:
    """The checks themselves: a lower layer importing a higher one, and two packages importing each other."""
    graph = {"db": {"feishu": {"db/models.py"}}, "feishu": {"db": {"feishu/inbox.py"}}}
    assert upward_imports(graph, [{"db"}, {"feishu"}]) == [
        "db (layer 0) imports feishu (layer 1) in db/models.py"
    ]
    assert cycles(graph) == [["db", "feishu"]]
    assert upward_imports({"a": {"b": {"a/x.py"}}, "b": {}}, [{"a", "b"}]) != []  # peers stay apart


def test_relative_type_checking_and_function_level_imports_count(tmp_path: Path) -> None:
    (tmp_path / "db").mkdir()
    (tmp_path / "db" / "models.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..feishu import bridge\n"
    )
    (tmp_path / "feishu").mkdir()
    (tmp_path / "feishu" / "bridge.py").write_text("def f():\n    import echocenter.db.models\n")
    (tmp_path / "app.py").write_text("from echocenter import feishu\n")
    assert package_imports(tmp_path) == {
        "app": {"feishu": {"app.py"}},
        "db": {"feishu": {"db/models.py"}},
        "feishu": {"db": {"feishu/bridge.py"}},
    }
