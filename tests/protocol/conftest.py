"""Fixtures of the native dialects' tests: the official chat templates (llama.cpp's source tree,
fetched once per session by ``scripts/llama-cpp-source.sh``; never copied into the repository),
a jinja2 renderer that behaves like Hugging Face's ``apply_chat_template``, the bundled 0.5B
model's template and vocabulary, and a helper that feeds a parser in chunks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest

from asynclm.protocol import Event, Forged, Text

ROOT = Path(__file__).resolve().parents[2]
SMALL_MODEL = "qwen2.5-coder-0.5b"


@pytest.fixture(scope="session")
def templates_dir() -> Path:
    """llama.cpp's ``models/templates`` of the installed llama-cpp-python version (the script
    downloads its source package once into the user cache); skips when that is impossible."""
    script = ROOT / "scripts" / "llama-cpp-source.sh"
    if not script.exists():
        pytest.skip(f"{script} is missing")
    try:
        out = subprocess.run(
            ["bash", str(script), sys.executable], capture_output=True, text=True, timeout=600,
            cwd=ROOT, check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        pytest.skip(f"cannot fetch llama.cpp's source (for its chat templates): {e}")
    if out.returncode != 0:
        pytest.skip("cannot fetch llama.cpp's source (pip download llama-cpp-python failed): "
                    + out.stderr.strip()[-300:])
    d = Path(out.stdout.strip().splitlines()[-1]) / "vendor" / "llama.cpp" / "models" / "templates"
    if not d.is_dir():
        pytest.skip(f"no templates directory in {d.parent.parent.parent}")
    return d


@pytest.fixture(scope="session")
def template(templates_dir: Path) -> Callable[[str], str]:
    """The source of one official template by file name (skips if absent)."""

    def get(name: str) -> str:
        path = templates_dir / name
        if not path.exists():
            pytest.skip(f"{name} is not in this llama.cpp version")
        return path.read_text(encoding="utf-8")

    return get


def _tojson(x: Any, ensure_ascii: bool = False, indent: int | None = None,
            separators: Any = None, sort_keys: bool = False) -> str:
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


def _raise(message: str) -> None:
    raise ValueError(message)


@pytest.fixture(scope="session")
def render_chat() -> Callable[..., str]:
    """``render(source, messages, tools=None, add_generation_prompt=True, **extra)``: the
    template rendered as Hugging Face's ``apply_chat_template`` does (sandboxed jinja2,
    ``trim_blocks``/``lstrip_blocks``, its ``tojson`` that keeps non-ASCII and key order)."""
    jinja2 = pytest.importorskip("jinja2")
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise
    env.globals["strftime_now"] = lambda fmt: "26 Jul 2024"
    assert jinja2

    def render(source: str, messages: Sequence[dict[str, Any]],
               tools: Sequence[dict[str, Any]] | None = None, *,
               add_generation_prompt: bool = True, **extra: Any) -> str:
        kw: dict[str, Any] = {"bos_token": "", "eos_token": "</s>", **extra}
        if tools is not None:
            kw["tools"] = list(tools)
        return env.from_string(source).render(
            messages=list(messages), add_generation_prompt=add_generation_prompt, **kw)

    return render


@pytest.fixture(scope="session")
def qwen_vocab() -> Any:
    """The bundled 0.5B's tokenizer (vocabulary only: cheap) and chat template."""
    pytest.importorskip("llama_cpp")
    from asynclm.engines.tokenizers import GGUFTokenizer
    from asynclm.models import ModelError, model_path

    if os.environ.get("ASYNCLM_NO_MODELS"):
        pytest.skip("ASYNCLM_NO_MODELS is set")
    try:
        path = model_path(SMALL_MODEL)
    except ModelError as e:
        pytest.skip(f"cannot pull {SMALL_MODEL}: {e}")
    return GGUFTokenizer(path)


def coalesce(events: Iterable[Event]) -> list[Event]:
    """Adjacent Text events merged (what the chunking contract compares)."""
    out: list[Event] = []
    for e in events:
        if isinstance(e, Text) and out and isinstance(out[-1], Text) and out[-1].end == e.start:
            prev = out[-1]
            out[-1] = Text(prev.text + e.text, prev.start, e.end)
        else:
            out.append(e)
    return out


def feed_in_chunks(parser: Any, text: str, cuts: Iterable[int]) -> list[Event]:
    """Every event of ``text`` fed in pieces cut at ``cuts``, then closed; coalesced. Feeding
    stops at a :class:`Forged` event (the parser drops the rest: the runtime rolls back)."""
    points = sorted({c for c in cuts if 0 < c < len(text)})
    events: list[Event] = []
    last = 0
    for c in [*points, len(text)]:
        got = parser.feed(text[last:c])
        events += got
        if any(isinstance(e, Forged) for e in got):
            return coalesce(events)
        last = c
    events += parser.close()
    return coalesce(events)


@pytest.fixture(scope="session")
def chunked() -> Callable[[Any, str, Iterable[int]], list[Event]]:
    """:func:`feed_in_chunks` (as a fixture: the test directory is no package)."""
    return feed_in_chunks
