"""The project's layout promises: requirements in step, one folder per function, thin handlers."""

from __future__ import annotations

import ast
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Final

ROOT = Path(__file__).parents[2]


def _normalise(requirement: str) -> str:
    requirement = requirement.split("#", 1)[0].strip().lower()
    return re.sub(r"\s+", "", requirement.replace("_", "-"))


def test_layer_requirements_match_pyproject_dependencies():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = sorted(_normalise(dep) for dep in project["dependencies"])
    lines = (ROOT / "layers" / "common" / "requirements.txt").read_text().splitlines()
    layer = sorted(_normalise(line) for line in lines if _normalise(line))
    assert layer == declared, "layers/common/requirements.txt drifted from [project].dependencies"


def test_research_layer_requirements_match_the_research_extra():
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["research"]
    declared = sorted(_normalise(dep) for dep in extra)
    lines = (ROOT / "layers" / "research" / "requirements.txt").read_text().splitlines()
    layer = sorted(_normalise(line) for line in lines if _normalise(line))
    assert layer == declared, "layers/research/requirements.txt drifted from the `research` extra"


def test_dev_tools_stay_out_of_the_layer():
    lines = (ROOT / "layers" / "common" / "requirements.txt").read_text().lower()
    for tool in ("moto", "pytest", "cfn-lint", "aws-sam-cli", "werkzeug", "ruff"):
        assert tool not in lines


def test_every_function_folder_has_a_thin_handler_and_sample_events():
    functions = sorted(p for p in (ROOT / "functions").iterdir() if p.is_dir() and not p.name.startswith("_"))
    assert functions
    for folder in functions:
        handler = folder / "handler.py"
        assert handler.is_file(), f"{folder.name} has no handler.py"
        assert len(handler.read_text().splitlines()) <= 80, f"{folder.name}/handler.py is not thin wiring"
        assert list((ROOT / "events" / folder.name).glob("*.json")), f"events/{folder.name}/ has no sample"


def test_the_local_runtime_is_not_part_of_the_layer():
    layer = ROOT / "layers" / "common" / "python" / "insightmesh"
    for source in layer.rglob("*.py"):
        text = source.read_text()
        assert "insightmesh_local" not in text, f"{source} imports the local runtime"
        assert "from functions" not in text and "import functions" not in text


def test_ci_runs_the_readme_test_command():
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make dev" in readme


# --- Layers -----------------------------------------------------------------------------------
# The layer is organised by bounded context (the first package level under insightmesh/), and the
# contexts sit in three layers. Imports point down the layers; sideways only where SIDEWAYS names
# the pair; nothing imports `admin`; `slack` never imports `conversation`; no cycle between
# contexts; nothing in the layer imports the local runtime or the Lambda handlers.

PLATFORM: Final = frozenset(
    {"config", "observability", "aws", "resilience", "clock", "api", "audit", "cfn", "job_contract", "google_api",
     "file_types", "caching", "tracing", "tracing_otel",
     "tracing_messaging"}
)
DOMAIN: Final = frozenset(
    {"directory", "auth", "llm", "knowledge", "credentials", "agents", "slack", "health", "tools",
     "budgets"}
)
APPLICATION: Final = frozenset({"conversation", "admin", "jobs", "console", "research", "evaluation"})
LAYERS: Final = {**{c: 0 for c in PLATFORM}, **{c: 1 for c in DOMAIN}, **{c: 2 for c in APPLICATION}}
LAYER_NAMES: Final = ("platform", "domain", "application")

# Platform modules are the toolkit every context stands on: they may use one another (config,
# observability and resilience under aws and api, for instance) as long as no cycle forms.
# Between domain contexts, and between application contexts, only these pairs, each for a reason.
# The pairs form no cycle (a test below checks it).
SIDEWAYS: Final[dict[tuple[str, str], str]] = {
    ("agents", "llm"): "an agent talks to the model it is given",
    ("agents", "knowledge"): "the assistant agent retrieves passages and cites them",
    ("agents", "tools"): "agents run the tool loop and cite the sources tools read",
    ("tools", "llm"): "the agent loop offers tools to the model and feeds their results back",
    ("tools", "knowledge"): "knowledge_search is the knowledge base's retrieval as a tool",
    ("auth", "directory"): "sessions, tokens and OIDC sign-in resolve to directory users",
    ("credentials", "auth"): "the Google credential routes are guarded and keep the OAuth state in a signed cookie",
    ("credentials", "directory"): "connecting a credential checks that the admin is still an active user",
    ("knowledge", "directory"): "retrieval filters by what every reader's user and groups may see",
    ("knowledge", "llm"): "the embedders reuse the LLM's HTTP client, Bedrock runtime and retry policy",
    ("directory", "slack"): "Slack is a directory provider: its user sync and first contact read Slack profiles",
    ("admin", "conversation"): "the control plane lists the workspaces the conversation context installed",
    ("conversation", "research"): "the worker starts and cancels research runs for a thread, and hands reports over",
    ("admin", "research"): "the control plane lists research runs",
    ("health", "knowledge"): "readiness checks the knowledge store, with its API key read as the store reads it",
    ("budgets", "llm"): "a budget limits the usage counters' cost and moves requests to a fallback model's client",
    ("budgets", "directory"): "a user's budgets include their groups'; the alert goes to the directory's admins",
    ("budgets", "slack"): "the admins are told in Slack when a budget nears its limit",
    ("jobs", "evaluation"): "answer_quality_eval is a job type of the engine (its lazy registry names it)",
    ("admin", "evaluation"): "the control plane manages the evaluation set (/api/eval-cases)",
    ("conversation", "evaluation"): "a 👎 with a reason becomes a case of the evaluation set",
}

# Outside the layer: the local runtime and CLI, and the Lambda handlers.
OUTSIDE: Final = frozenset({"insightmesh_local", "local", "functions"})
_MODULE_STRING: Final = re.compile(r"insightmesh(\.[a-z_][a-z0-9_]*)+(:[A-Za-z_]\w*)?")


def _imported_modules(tree: ast.AST, module: list[str], is_package: bool) -> Iterator[tuple[int, str]]:
    """Every module ``tree`` imports, anywhere in it (functions and ``TYPE_CHECKING`` blocks too),
    as ``(line, dotted name)``. A string that names a module (``"insightmesh.x.y:Class"``, the lazy
    registries' form) counts as an import."""
    package = module if is_package else module[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            if target.count(".") == 0 or not node.module:
                # `from insightmesh import admin`, `from . import x`: each name may be a module.
                for alias in node.names:
                    yield node.lineno, f"{target}.{alias.name}"
            else:
                yield node.lineno, target
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _MODULE_STRING.fullmatch(node.value):
            yield node.lineno, node.value.partition(":")[0]


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one context (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def layering_violations(package: Path) -> list[str]:
    """Every import under ``package`` (an ``insightmesh/`` directory) that breaks the layering
    rules, as ``"<file>:<line>: <what>"``, plus one line per cycle between contexts."""
    root_name = package.name
    violations: list[str] = []
    graph: dict[str, set[str]] = {}
    contexts = {p.stem for p in package.iterdir() if (p.is_dir() and (p / "__init__.py").exists()) or p.suffix == ".py"}
    contexts.discard("__init__")
    for context in sorted(contexts - LAYERS.keys()):
        violations.append(f"{context}: a context in no layer (add it to PLATFORM, DOMAIN or APPLICATION)")
    for source in sorted(package.rglob("*.py")):
        relative = source.relative_to(package)
        module = [root_name, *relative.with_suffix("").parts]
        is_package = module[-1] == "__init__"
        if is_package:
            module = module[:-1]
        if len(module) < 2:
            continue
        context = module[1]
        tree = ast.parse(source.read_text(), filename=str(source))
        for line, imported in _imported_modules(tree, module, is_package):
            parts = imported.split(".")
            where = f"{relative.as_posix()}:{line}"
            if parts[0] in OUTSIDE:
                violations.append(f"{where}: {context} imports {imported}, outside the layer")
                continue
            if parts[0] != root_name or len(parts) < 2 or parts[1] == context:
                continue
            target = parts[1]
            if target not in contexts and target not in LAYERS:
                continue  # a name imported from the package itself, not a context
            graph.setdefault(context, set()).add(target)
            if target == "admin":
                violations.append(f"{where}: {context} imports {imported}; nothing imports admin")
            elif context == "slack" and target == "conversation":
                violations.append(f"{where}: slack imports {imported}; slack never imports conversation")
            elif context not in LAYERS or target not in LAYERS:
                continue  # reported once above
            elif LAYERS[target] > LAYERS[context]:
                violations.append(
                    f"{where}: {context} ({LAYER_NAMES[LAYERS[context]]}) imports {imported}"
                    f" ({LAYER_NAMES[LAYERS[target]]}): upward"
                )
            elif LAYERS[target] == LAYERS[context] > 0 and (context, target) not in SIDEWAYS:
                violations.append(f"{where}: {context} imports {imported}: sideways, and the pair is not in SIDEWAYS")
    for component in _cycles(graph):
        violations.append(f"cycle between contexts: {', '.join(component)}")
    return violations


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / "insightmesh" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "insightmesh"


_CLEAN_TREE: Final = {
    "__init__.py": "",
    "config.py": "import os\n",
    "aws.py": "from insightmesh.config import x\n",
    "slack/__init__.py": "",
    "slack/client.py": "from insightmesh.aws import y\nfrom . import formatting\n",
    "slack/formatting.py": "",
    "conversation/__init__.py": "",
    "conversation/worker.py": "from insightmesh.slack.client import post\nfrom ..aws import y\n",
    "jobs/__init__.py": "",
    "jobs/runner.py": "from insightmesh import slack\n",
    "admin/__init__.py": "",
    "admin/routes.py": "from insightmesh.conversation import worker\n",
}


def test_the_layering_checker_accepts_a_tree_that_keeps_the_rules(tmp_path: Path) -> None:
    assert layering_violations(_write(tmp_path, _CLEAN_TREE)) == []


def test_the_layering_checker_fails_when_slack_imports_conversation(tmp_path: Path) -> None:
    package = _write(tmp_path, {**_CLEAN_TREE, "slack/ingress.py": "from insightmesh.conversation import queue\n"})
    assert layering_violations(package) == [
        "slack/ingress.py:1: slack imports insightmesh.conversation; slack never imports conversation",
        "cycle between contexts: conversation, slack",
    ]


def test_the_layering_checker_fails_when_jobs_imports_admin(tmp_path: Path) -> None:
    package = _write(tmp_path, {**_CLEAN_TREE, "jobs/service.py": "import insightmesh.admin.routes\n"})
    assert layering_violations(package) == [
        "jobs/service.py:1: jobs imports insightmesh.admin.routes; nothing imports admin",
    ]


def test_the_layering_checker_sees_imports_inside_functions_and_type_checking_blocks(tmp_path: Path) -> None:
    package = _write(
        tmp_path,
        {
            **_CLEAN_TREE,
            "aws.py": "def session():\n    from insightmesh.slack.client import post\n    return post\n",
            "config.py": (
                "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from insightmesh.jobs.runner import Run\n"
            ),
        },
    )
    assert layering_violations(package) == [
        "aws.py:2: aws (platform) imports insightmesh.slack.client (domain): upward",
        "config.py:3: config (platform) imports insightmesh.jobs.runner (application): upward",
        "cycle between contexts: aws, slack",
    ]


def test_the_layering_checker_needs_an_allow_listed_pair_for_a_sideways_import(tmp_path: Path) -> None:
    files = {
        **_CLEAN_TREE,
        "llm/__init__.py": "",
        "agents/__init__.py": "",
        "agents/base.py": "from insightmesh.llm import client\n",
        "jobs/runner.py": "REGISTRY = {'x': 'insightmesh.conversation.worker:Worker'}\n",
    }
    assert layering_violations(_write(tmp_path, files)) == [
        "jobs/runner.py:1: jobs imports insightmesh.conversation.worker: sideways, and the pair is not in SIDEWAYS",
    ]


def test_the_layering_checker_refuses_the_local_runtime_handlers_and_unplaced_contexts(tmp_path: Path) -> None:
    files = {
        **_CLEAN_TREE,
        "slack/files.py": "import insightmesh_local.cli\nfrom functions.health import handler\n",
        "gadgets/__init__.py": "",
    }
    assert layering_violations(_write(tmp_path, files)) == [
        "gadgets: a context in no layer (add it to PLATFORM, DOMAIN or APPLICATION)",
        "slack/files.py:1: slack imports insightmesh_local.cli, outside the layer",
        "slack/files.py:2: slack imports functions.health, outside the layer",
    ]


def test_the_sideways_allow_list_forms_no_cycle_and_stays_within_a_layer() -> None:
    graph: dict[str, set[str]] = {}
    for source, target in SIDEWAYS:
        assert LAYERS[source] == LAYERS[target] > 0, (source, target)
        assert target != "admin" and (source, target) != ("slack", "conversation")
        graph.setdefault(source, set()).add(target)
    assert _cycles(graph) == []


def _real_tree_violations() -> list[str]:
    return layering_violations(ROOT / "layers" / "common" / "python" / "insightmesh")


def test_the_layer_keeps_its_layers() -> None:
    assert _real_tree_violations() == []
