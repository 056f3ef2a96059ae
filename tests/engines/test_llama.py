"""llama-cpp-python loading (asynclm.engines._llama): the AMX-kernel check. Fast: a fake
library stands in for llama_cpp except in the last test."""

from __future__ import annotations

import pytest

from asynclm.engines._llama import has_amx_kernels, warn_if_amx


class _FakeLlamaCpp:
    def __init__(self, info: str) -> None:
        self.info = info

    def llama_print_system_info(self) -> bytes:
        return self.info.encode()


def test_a_build_with_amx_kernels_is_warned_about():
    with pytest.warns(RuntimeWarning, match="-mno-amx-int8"):
        warn_if_amx(_FakeLlamaCpp("CPU : AVX2 = 1 | AVX512 = 1 | AMX_INT8 = 1 | REPACK = 1 |"))


def test_a_build_without_amx_is_not_warned_about(recwarn):
    warn_if_amx(_FakeLlamaCpp("CPU : AVX2 = 1 | AVX512 = 1 | REPACK = 1 |"))
    assert not [w for w in recwarn if "AMX" in str(w.message)]


def test_the_installed_engine_has_no_amx_kernels():
    """``make install`` builds llama.cpp without AMX (its kernels crash); the engine in use
    must be that build."""
    assert not has_amx_kernels(pytest.importorskip("llama_cpp"))
