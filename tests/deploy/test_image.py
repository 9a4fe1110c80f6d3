"""The Dockerfile and .dockerignore, read as text (no Docker engine here): a builder stage
that builds the wheel, a slim non-root runtime stage without compilers, one entry point for
every role, and a health check that needs nothing but Python."""

from __future__ import annotations

import fnmatch
import json
import re

import pytest

from tests.deploy.support import REPO
from tradepulse.config import _VARIABLES, Settings, load_settings, read_dotenv

Instruction = tuple[str, str]


def instructions(text: str) -> list[Instruction]:
    """``(KEYWORD, arguments)`` of every instruction, continuation lines joined."""
    joined = re.sub(r"\\\n", " ", text)
    lines = [ln.strip() for ln in joined.splitlines()]
    return [
        (ln.split(None, 1)[0].upper(), ln.split(None, 1)[1] if " " in ln else "")
        for ln in lines
        if ln and not ln.startswith("#")
    ]


def stages(text: str) -> dict[str, list[Instruction]]:
    """Instructions per stage name (``FROM image AS name``), image in ``FROM`` resolved from
    the global ``ARG``s."""
    args: dict[str, str] = {}
    out: dict[str, list[Instruction]] = {}
    current: list[Instruction] | None = None
    for keyword, rest in instructions(text):
        if keyword == "ARG" and current is None:
            name, _, value = rest.partition("=")
            args[name] = value
        elif keyword == "FROM":
            image, _, name = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], rest).partition(
                " AS "
            )
            current = out.setdefault(name.strip(), [("FROM", image.strip())])
        elif current is not None:
            current.append((keyword, rest))
    return out


@pytest.fixture(scope="module")
def dockerfile() -> dict[str, list[Instruction]]:
    return stages((REPO / "Dockerfile").read_text(encoding="utf-8"))


def all_of(stage: list[Instruction], keyword: str) -> list[str]:
    return [rest for k, rest in stage if k == keyword]


def test_stages_parser_resolves_args_and_names() -> None:
    text = "ARG B=python:3.11-slim\nFROM ${B} AS one\nRUN a \\\n  b\nFROM one AS two\nUSER x\n"
    assert stages(text) == {
        "one": [("FROM", "python:3.11-slim"), ("RUN", "a    b")],
        "two": [("FROM", "one"), ("USER", "x")],
    }


def test_image_has_builder_and_runtime_stages_on_python_3_11_slim(
    dockerfile: dict[str, list[Instruction]],
) -> None:
    assert list(dockerfile) == ["builder", "runtime"]
    for stage in dockerfile.values():
        assert stage[0] == ("FROM", "python:3.11-slim")
    assert any("pip wheel" in r for r in all_of(dockerfile["builder"], "RUN"))


def test_runtime_stage_has_no_compiler_and_copies_the_built_environment(
    dockerfile: dict[str, list[Instruction]],
) -> None:
    runtime = dockerfile["runtime"]
    runs = " ".join(all_of(runtime, "RUN"))
    for tool in ("build-essential", "gcc", "g++", "make ", "apt-get install", "pip install"):
        assert tool not in runs, tool
    assert "--from=builder /opt/venv /opt/venv" in all_of(runtime, "COPY")


def test_runtime_stage_runs_as_non_root_with_one_entry_point(
    dockerfile: dict[str, list[Instruction]],
) -> None:
    runtime = dockerfile["runtime"]
    user = all_of(runtime, "USER")[-1]
    assert user.split(":")[0] not in ("root", "0")
    assert json.loads(all_of(runtime, "ENTRYPOINT")[-1]) == ["tradepulse"]


def test_health_check_probes_live_with_python_not_curl(
    dockerfile: dict[str, list[Instruction]],
) -> None:
    check = all_of(dockerfile["runtime"], "HEALTHCHECK")[-1]
    command = json.loads(check.split("CMD", 1)[1])
    assert command[0] == "python" and "curl" not in check
    script = REPO / "deploy" / "docker" / "healthcheck.py"
    assert f"COPY deploy/docker/healthcheck.py {command[1]}" in [
        f"COPY {c}" for c in all_of(dockerfile["runtime"], "COPY")
    ]
    assert '"/health/live"' in script.read_text(encoding="utf-8")


def test_runtime_environment_is_valid_settings(dockerfile: dict[str, list[Instruction]]) -> None:
    env = dict(re.findall(r"(\w+)=(\S+)", " ".join(all_of(dockerfile["runtime"], "ENV"))))
    tradepulse = {k: v for k, v in env.items() if k.startswith("TRADEPULSE_")}
    assert set(tradepulse) <= set(_VARIABLES)
    assert set(tradepulse) <= set(read_dotenv(REPO / ".env.example"))
    settings = load_settings(tradepulse, dotenv=None)
    assert (settings.http_host, settings.http_port) == ("0.0.0.0", Settings().http_port)


def ignored(path: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatch(path, p) or path.startswith(p.rstrip("/") + "/") for p in patterns)


def test_dockerignore_keeps_what_the_build_copies_and_drops_the_rest(
    dockerfile: dict[str, list[Instruction]],
) -> None:
    lines = (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
    patterns = [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]
    copied = [
        src
        for stage in dockerfile.values()
        for c in all_of(stage, "COPY")
        if not c.startswith("--from")
        for src in c.split()[:-1]
    ]
    assert copied, "no COPY found"
    for source in copied:
        assert (REPO / source).exists(), source
        assert not ignored(source, patterns), source
    for unwanted in (".git", ".venv", "tests", "bench", ".env"):
        assert ignored(unwanted, patterns), unwanted
