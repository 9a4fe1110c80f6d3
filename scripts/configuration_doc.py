"""Writes docs/configuration.md from .env.example (the one place settings are documented)
and the Settings field each variable sets (``tradepulse.config``).

    python scripts/configuration_doc.py          # rewrite docs/configuration.md
    python scripts/configuration_doc.py --check  # exit 1 when it is out of date
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEADER = """# Configuration

Every setting is an environment variable (a `.env` file in the working directory is read
too; the environment wins). Values are validated once at start-up: a bad one stops the
process with a message naming the variable and what it accepts. Durations take a unit
(`ms`, `s`, `min`, `hour`, `day`), flags `true`/`false`. Secrets (`TRADEPULSE_PG_DSN`,
`TRADEPULSE_REDIS_URL` passwords, `TRADEPULSE_JWT_SECRET`) are never printed.

`tradepulse demo` needs none of them: it runs on embedded defaults (see
[the tour](tour.md)); its `--redis-url`, `--pg-dsn` and `--kafka-bootstrap` options switch
one part to a real service.

This page is generated from `.env.example` by `scripts/configuration_doc.py`; edit that file
and run the script (a test checks that the two agree).

| variable | default | setting | meaning |
|---|---|---|---|
"""


def groups(example: str) -> list[tuple[str, list[tuple[str, str]]]]:
    """``(comment, [(variable, default), ...])`` for each comment block of the file."""
    out: list[tuple[str, list[tuple[str, str]]]] = []
    comment: list[str] = []
    for raw in example.splitlines():
        line = raw.strip()
        if line.startswith("#"):
            comment.append(line.lstrip("#").strip())
        elif "=" in line:
            name, value = line.split("=", 1)
            if comment:
                out.append((" ".join(comment), []))
                comment = []
            out[-1][1].append((name.strip(), value.strip()))
    return out


def render(example: str, fields: dict[str, str]) -> str:
    rows = []
    for meaning, variables in groups(example):
        for name, default in variables:
            shown = f"`{default}`" if default else "(empty)"
            field = f"`{fields[name]}`" if name in fields else ""
            text = meaning.replace("|", "/").replace("<", "&lt;").replace(">", "&gt;")
            rows.append(f"| `{name}` | {shown} | {field} | {text} |")
    return HEADER + "\n".join(rows) + "\n"


def main() -> int:
    sys.path.insert(0, str(ROOT / "src"))
    from tradepulse.config import _VARIABLES

    fields = {name: field for name, (field, _parse) in _VARIABLES.items()}
    text = render((ROOT / ".env.example").read_text(), fields)
    target = ROOT / "docs" / "configuration.md"
    if "--check" in sys.argv:
        return 0 if target.read_text() == text else 1
    target.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
