"""The documentation says what the code does: every setting is in the configuration page
(generated from ``.env.example``), every rule example parses, every error shown is the
error the parser gives."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType

import pytest

from tradepulse.config import _VARIABLES
from tradepulse.core.rules import RuleError, parse_rule

ROOT = Path(__file__).parents[2]
BLOCK = re.compile(r"```(json|text)\n(.*?)```", re.S)


def generator() -> ModuleType:
    path = ROOT / "scripts" / "configuration_doc.py"
    spec = importlib.util.spec_from_file_location("configuration_doc", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_configuration_page_lists_every_setting_with_its_field() -> None:
    page = (ROOT / "docs" / "configuration.md").read_text()
    for name, (field, _parse) in _VARIABLES.items():
        assert f"| `{name}` |" in page, name
        assert f"`{field}`" in page, field


def test_configuration_page_is_what_the_generator_writes_from_env_example() -> None:
    module = generator()
    fields = {name: field for name, (field, _parse) in _VARIABLES.items()}
    expected = module.render((ROOT / ".env.example").read_text(), fields)
    assert (ROOT / "docs" / "configuration.md").read_text() == expected, (
        "docs/configuration.md is stale: run python scripts/configuration_doc.py")


def rule_examples() -> list[tuple[str, list[str] | None]]:
    """Every JSON block of docs/rules.md with the error lines of the text block right
    after it (None: the rule is valid)."""
    blocks = BLOCK.findall((ROOT / "docs" / "rules.md").read_text())
    out: list[tuple[str, list[str] | None]] = []
    for i, (kind, body) in enumerate(blocks):
        if kind == "json":
            follows = blocks[i + 1] if i + 1 < len(blocks) else None
            errors = follows[1].strip().splitlines() if follows and follows[0] == "text" else None
            out.append((body, errors))
    return out


def test_rules_page_has_valid_and_invalid_examples() -> None:
    examples = rule_examples()
    assert sum(e is None for _, e in examples) >= 4
    assert sum(e is not None for _, e in examples) >= 1


@pytest.mark.parametrize(("body", "errors"), rule_examples())
def test_rules_page_example_parses_or_gives_the_errors_shown(
    body: str, errors: list[str] | None
) -> None:
    definition = json.loads(body)
    if errors is None:
        assert parse_rule(definition).name == definition["name"]
        return
    with pytest.raises(RuleError) as caught:
        parse_rule(definition)
    assert caught.value.errors == errors
