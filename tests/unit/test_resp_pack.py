"""The compiled RESP packer (``adapters/_resp.pyx``) gives, for any command, the bytes
``hiredis.pack_command`` gives, or the same error: arguments of every kind it packs itself
(bytes, text of any script, integers to the ends of 64 bits) and those it hands to hiredis
(floats, bools, larger integers, text that is not valid UTF-8, other objects)."""

from __future__ import annotations

import shutil
import sysconfig
from typing import Any

import hiredis
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradepulse.adapters import redis_packed

try:
    from tradepulse.adapters._resp import pack_command
except ImportError:  # installed without a C compiler
    pack_command = None  # type: ignore[assignment]

needs_packer = pytest.mark.skipif(
    pack_command is None,
    reason="the compiled packer is not built here (no C compiler at install): hiredis packs",
)

packed_itself = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=80),
    st.integers(-(2**63), 2**63 - 1),
    st.sampled_from([0, -1, 9, 10, 99, 100, 2**63 - 1, -(2**63), "", b"", "é€😀"]),
)
handed_on = st.one_of(
    st.floats(allow_nan=False),
    st.booleans(),
    st.integers(2**63, 2**80),
    st.integers(-(2**80), -(2**63) - 1),
    st.just("\ud800"),  # a lone surrogate: not UTF-8
    st.just(None),
    st.just(bytearray(b"x")),
)


def packs(pack: Any, command: tuple[Any, ...]) -> tuple[str, Any]:
    try:
        return "ok", pack(command)
    except Exception as exc:  # the same error, by type and message
        return type(exc).__name__, str(exc)


@needs_packer
@settings(max_examples=600, deadline=None)
@given(command=st.lists(packed_itself, min_size=1, max_size=60).map(tuple))
def test_commands_of_bytes_text_and_integers_pack_as_hiredis_packs_them(
    command: tuple[Any, ...],
) -> None:
    got = pack_command(command)
    assert got == hiredis.pack_command(command)


@needs_packer
@settings(max_examples=300, deadline=None)
@given(command=st.lists(st.one_of(packed_itself, handed_on), min_size=0, max_size=12).map(tuple))
def test_any_other_command_gives_what_hiredis_gives(command: tuple[Any, ...]) -> None:
    assert packs(pack_command, command) == packs(hiredis.pack_command, command)


def test_a_long_argument_keeps_its_length_header() -> None:
    big = b"x" * 1_000_003
    expected = b"*2\r\n$5\r\nRPUSH\r\n$1000003\r\n" + big + b"\r\n"
    assert redis_packed.pack_command(("RPUSH", big)) == expected


def test_where_a_c_compiler_exists_the_packer_was_built() -> None:
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        pytest.skip(f"no C compiler ({compiler}) on this machine: hiredis packs")
    assert redis_packed.PACKER == "compiled", "the packer did not build: pip install -e ."
