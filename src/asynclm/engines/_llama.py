"""llama-cpp-python, loaded on demand, and a model's vocabulary-only handle.

Shared by the engine (:mod:`asynclm.engines.llamacpp`) and the tokenizer that reads a GGUF
file without loading its weights (:class:`asynclm.engines.tokenizers.GGUFTokenizer`).
Requires the ``llama`` extra: ``pip install 'asynclm[llama]'``.
"""

from __future__ import annotations

import functools
import warnings
from typing import Any

from asynclm.errors import LlamaCppNotInstalled

__all__ = ["CHATML", "Vocab", "has_amx_kernels", "import_llama"]

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
"""Used only when a GGUF file carries no ``tokenizer.chat_template``."""


def import_llama() -> Any:
    """The ``llama_cpp`` module (warns once if its build has AMX kernels).

    Raises :class:`~asynclm.errors.LlamaCppNotInstalled` when it (or jinja2) is missing."""
    try:
        import llama_cpp
        import llama_cpp.llama_chat_format  # noqa: F401  (needs jinja2)
    except ImportError as e:
        raise LlamaCppNotInstalled(
            "the llama.cpp engine needs llama-cpp-python (and jinja2); install the extra: "
            "pip install 'asynclm[llama]'"
            f" ({e})"
        ) from e
    warn_if_amx(llama_cpp)
    return llama_cpp


def has_amx_kernels(llama_cpp: Any) -> bool:
    """Whether this llama-cpp-python build has llama.cpp's AMX kernels: in 0.3.36 they crash
    the process (SIGSEGV in ``ggml_backend_amx_mul_mat``) on the first eval of a quantized
    model. ``make install`` makes the same check to decide whether to rebuild the engine."""
    return "AMX_INT8 = 1" in llama_cpp.llama_print_system_info().decode(errors="replace")


@functools.cache
def warn_if_amx(llama_cpp: Any) -> None:
    """Warn (once) about a build with AMX kernels (see :func:`has_amx_kernels`)."""
    if has_amx_kernels(llama_cpp):
        warnings.warn(
            "this llama-cpp-python was built with AMX kernels, which crash on the first eval; "
            "rebuild it without them: CMAKE_ARGS='-DCMAKE_C_FLAGS=-mno-amx-int8 "
            "-DCMAKE_CXX_FLAGS=-mno-amx-int8' pip install --force-reinstall --no-deps "
            "--no-cache-dir llama-cpp-python (`make install` does this)",
            RuntimeWarning,
            stacklevel=3,
        )


class Vocab:
    """A vocabulary-only model handle (no weights, no context): thread-safe, read-only."""

    def __init__(self, llama_cpp: Any, path: str) -> None:
        self._lib = llama_cpp
        params = llama_cpp.llama_model_default_params()
        params.vocab_only = True
        model = llama_cpp.llama_model_load_from_file(path.encode(), params)
        if not model:
            raise ValueError(f"could not load the vocabulary of {path}")
        self._model = model
        self.ptr = llama_cpp.llama_model_get_vocab(model)
        self.n_vocab: int = llama_cpp.llama_vocab_n_tokens(self.ptr)
        self._added: dict[int, str] | None = None

    def added_tokens(self) -> dict[int, str]:
        """Tokens whose attributes say CONTROL, USER_DEFINED or UNUSED (padding), by id, with
        their text (computed once: about 0.1 s for a 150k vocabulary)."""
        if self._added is None:
            lib = self._lib
            mask = (lib.LLAMA_TOKEN_ATTR_CONTROL | lib.LLAMA_TOKEN_ATTR_USER_DEFINED
                    | lib.LLAMA_TOKEN_ATTR_UNUSED)
            get_attr, ptr = lib.llama_vocab_get_attr, self.ptr
            self._added = {
                t: self.text(t) for t in range(self.n_vocab) if get_attr(ptr, t) & mask
            }
        return self._added

    def meta(self, key: str) -> str | None:
        lib = self._lib
        n = lib.llama_model_meta_val_str(self._model, key.encode(), None, 0)
        if n < 0:
            return None
        buf = lib.ctypes.create_string_buffer(n + 1)
        lib.llama_model_meta_val_str(self._model, key.encode(), buf, n + 1)
        return buf.value.decode("utf-8", errors="replace")

    def tokenize(self, data: bytes, *, special: bool) -> list[int]:
        lib = self._lib
        cap = len(data) + 8
        buf = (lib.llama_token * cap)()
        n = lib.llama_tokenize(self.ptr, data, len(data), buf, cap, False, special)
        if n < 0:
            cap = -n
            buf = (lib.llama_token * cap)()
            n = lib.llama_tokenize(self.ptr, data, len(data), buf, cap, False, special)
            if n < 0:
                raise RuntimeError(f"llama_tokenize failed ({n})")
        return buf[:n]

    def piece(self, token: int, buf: Any) -> bytes:
        lib = self._lib
        n = lib.llama_token_to_piece(self.ptr, token, buf, len(buf), 0, True)
        if n < 0:  # longer than the buffer
            big = (lib.ctypes.c_char * -n)()
            n = lib.llama_token_to_piece(self.ptr, token, big, len(big), 0, True)
            return big.raw[:n]
        return buf.raw[:n]

    def text(self, token: int) -> str:
        return self._lib.llama_vocab_get_text(self.ptr, token).decode("utf-8", errors="replace")

    def chat_formatter(self) -> tuple[str, Any]:
        """The model's chat template (ChatML if the file has none) and a formatter for it."""
        lib = self._lib
        template = self.meta("tokenizer.chat_template") or CHATML
        eos, bos = lib.llama_vocab_eos(self.ptr), lib.llama_vocab_bos(self.ptr)
        return template, lib.llama_chat_format.Jinja2ChatFormatter(
            template=template,
            eos_token=self.text(eos) if eos >= 0 else "",
            bos_token=self.text(bos) if bos >= 0 else "",
            add_generation_prompt=True,
        )

    def close(self) -> None:
        if self._model is not None:
            self._lib.llama_model_free(self._model)
            self._model = None
