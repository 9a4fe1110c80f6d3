"""Helpers of the deployment tests: the repository's files, a small kustomize, PromQL
metric names, the metric names tradepulse declares, and the CLI's command tree."""

from __future__ import annotations

import copy
import re
import shutil
from pathlib import Path
from typing import Any

import typer
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"

Doc = dict[str, Any]


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def load_docs(path: Path) -> list[Doc]:
    """Every non-empty YAML document of ``path``."""
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


def require_promtool() -> str:
    """The path of ``promtool``; fails (never skips) with what to install when absent."""
    path = shutil.which("promtool")
    assert path, (
        "promtool is not installed: run `make services` (scripts/ensure-services.sh installs "
        "Debian's prometheus package) or `apt-get install prometheus`"
    )
    return path


# --- kustomize (the subset these manifests use) -----------------------------------------

_CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}


class KustomizeError(AssertionError):
    """A kustomization that does not resolve: a missing file, or a patch without target."""


def kustomize(directory: Path) -> list[Doc]:
    """Renders ``directory/kustomization.yaml``: ``resources`` (files or directories with
    their own kustomization), ``namespace``, ``images`` (name, newName, newTag) and
    ``patches`` (strategic merge by kind and name; lists of named items merged by name)."""
    spec = load_yaml(directory / "kustomization.yaml")
    docs: list[Doc] = []
    for entry in spec.get("resources", []):
        path = (directory / entry).resolve()
        if path.is_dir():
            docs += kustomize(path)
        elif path.is_file():
            docs += load_docs(path)
        else:
            raise KustomizeError(f"{directory}/kustomization.yaml: resource {entry} not found")
    for patch in spec.get("patches", []):
        path = directory / patch["path"]
        if not path.is_file():
            raise KustomizeError(f"{directory}/kustomization.yaml: patch {path} not found")
        for change in load_docs(path):
            _apply_patch(docs, change, path)
    for doc in docs:
        if spec.get("namespace") and doc["kind"] not in _CLUSTER_SCOPED:
            doc["metadata"]["namespace"] = spec["namespace"]
        for image in spec.get("images", []):
            _set_image(doc, image)
    return docs


def _apply_patch(docs: list[Doc], change: Doc, source: Path) -> None:
    for i, doc in enumerate(docs):
        if (doc["kind"], doc["metadata"]["name"]) == (change["kind"], change["metadata"]["name"]):
            docs[i] = merge(doc, change)
            return
    raise KustomizeError(f"{source}: no {change['kind']} {change['metadata']['name']} to patch")


def merge(base: Any, change: Any) -> Any:
    """Strategic merge of ``change`` into ``base`` (a copy)."""
    if isinstance(base, dict) and isinstance(change, dict):
        out = copy.deepcopy(base)
        for key, value in change.items():
            out[key] = merge(out[key], value) if key in out else copy.deepcopy(value)
        return out
    if _named_list(base) and _named_list(change):
        out_list = copy.deepcopy(base)
        for item in change:
            index = next((i for i, b in enumerate(out_list) if b["name"] == item["name"]), None)
            if index is None:
                out_list.append(copy.deepcopy(item))
            else:
                out_list[index] = merge(out_list[index], item)
        return out_list
    return copy.deepcopy(change)


def _named_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, dict) and "name" in v for v in value)


def pod_spec(doc: Doc) -> Doc | None:
    """The pod spec of a workload object, if it is one."""
    template = doc.get("spec", {}).get("template", {})
    return template.get("spec") if isinstance(template, dict) else None


def containers(doc: Doc) -> list[Doc]:
    spec = pod_spec(doc) or {}
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def _set_image(doc: Doc, image: Doc) -> None:
    for container in containers(doc):
        name, _, tag = container["image"].partition(":")
        if name == image["name"]:
            container["image"] = f"{image.get('newName', name)}:{image.get('newTag', tag)}"


# --- PromQL -------------------------------------------------------------------------------

_KEYWORDS = {
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "offset",
    "bool",
    "inf",
    "nan",
}
_STRING = re.compile(r'"(?:\\.|[^"\\])*"')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"(?<![\w:.$])([A-Za-z_:][\w:]*)(\s*\()?")


def promql_metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (not functions, keywords, labels, durations,
    numbers or Grafana variables). ``label_values(metric, label)``: the metric only."""
    expr = re.sub(r"label_values\(\s*([\w:]+)\s*,[^)]*\)", r"\1", expr)
    expr = _STRING.sub("", expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = _GROUPING.sub("", expr)
    return {
        m.group(1)
        for m in _IDENT.finditer(expr)
        if not m.group(2) and m.group(1).lower() not in _KEYWORDS
    }


def declared_metric_names() -> set[str]:
    """Every sample name ``tradepulse.metrics`` can expose: the default registry (with
    prometheus_client's process and platform collectors) and the supervisor's, counters
    with ``_total``, histograms with ``_bucket``/``_sum``/``_count``."""
    from prometheus_client.core import REGISTRY

    from tradepulse import metrics

    suffixes = {
        "counter": ("_total",),
        "histogram": ("_bucket", "_sum", "_count"),
        "summary": ("_sum", "_count", ""),
    }
    names: set[str] = set()
    for registry in (REGISTRY, metrics.SUPERVISOR):
        for family in registry.collect():
            names |= {family.name + s for s in suffixes.get(family.type, ("",))}
    return names


# --- the CLI ------------------------------------------------------------------------------


def cli_command(argv: list[str]) -> tuple[Any, list[str]]:
    """The (typer/click) command ``tradepulse ARGV`` runs and the arguments left for it;
    fails on an unknown command."""
    from tradepulse.cli import app

    command: Any = typer.main.get_command(app)
    rest = list(argv)
    while hasattr(command, "list_commands") and rest and not rest[0].startswith("-"):
        sub = command.get_command(typer.Context(command), rest[0])
        assert sub is not None, f"tradepulse has no command {' '.join(argv)!r}"
        command, rest = sub, rest[1:]
    return command, rest


def parse_cli(argv: list[str]) -> dict[str, Any]:
    """The parameters ``tradepulse ARGV`` would run with (click's own parser: an unknown
    option or a bad value raises)."""
    command, rest = cli_command(argv)
    ctx = command.make_context("tradepulse", rest, resilient_parsing=False)
    return dict(ctx.params)
