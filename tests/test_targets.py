"""The table of backends (mtriton/targets.py) and what derives from it."""

from __future__ import annotations

import pytest

import mtriton
from mtriton import backends, options, targets
from mtriton.backends.dump import DUMPED, source_dump
from mtriton.ir.parser import parse_function
from mtriton.options import DEFAULT_LAUNCH


@pytest.mark.parametrize("target", targets.TARGETS, ids=lambda t: t.name)
def test_every_row_names_its_backend_class(target: targets.Target) -> None:
    cls = backends.backend_class(target.name)
    assert cls.name == target.name
    if target.name in DUMPED:
        assert cls.dialect.name == target.language


def test_options_and_the_dump_derive_from_the_table() -> None:
    assert options.BACKENDS == ("metal", "cuda", "interpreter", "metal-emu", "cuda-emu")
    assert DUMPED == ("metal", "cuda")


def test_current_target_reads_the_language_column(monkeypatch: pytest.MonkeyPatch) -> None:
    for target in targets.TARGETS:
        monkeypatch.setenv("MTRITON_BACKEND", target.name)
        assert mtriton.current_target() == target.language
    monkeypatch.setenv("MTRITON_BACKEND", "vulkan")
    with pytest.raises(
        mtriton.BackendUnavailable, match="unknown backend 'vulkan'; expected one of metal, cuda"
    ):
        mtriton.current_target()


def test_unknown_backends_are_refused() -> None:
    with pytest.raises(mtriton.BackendUnavailable, match="unknown backend 'vulkan'"):
        mtriton.set_backend("vulkan")
    with pytest.raises(mtriton.BackendUnavailable, match="unknown backend 'vulkan'"):
        backends.get_backend("vulkan")
    fn = parse_function("func @noop() {\n  return\n}")
    with pytest.raises(
        mtriton.BackendUnavailable, match="no source to dump for backend 'metal-emu'; expected metal or cuda"
    ):
        source_dump("metal-emu", fn, DEFAULT_LAUNCH)
