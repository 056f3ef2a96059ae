"""Dialects by name (``get_dialect``) and the native format a chat template speaks
(``detect_dialect``), on the official templates and the bundled model's."""

from __future__ import annotations

from typing import Any

import pytest

from asynclm.errors import AsyncLMError, ProtocolError, UnknownDialect
from asynclm.protocol import (
    CML,
    DIALECTS,
    Dialect,
    HermesDialect,
    Llama3Dialect,
    MistralDialect,
    PythonicDialect,
    detect_dialect,
    get_dialect,
)
from asynclm.protocol.chat_frames import CHATML, HERMES_TOOL, LLAMA3, MISTRAL
from asynclm.protocol.events import Call, CallOpened, MalformedCall


def test_every_name_builds_a_dialect() -> None:
    assert DIALECTS == ("cml", "hermes", "hermes-bare", "llama3", "mistral", "pythonic")
    for name in DIALECTS:
        d = get_dialect(name)
        assert isinstance(d, Dialect) and d.name == name
    assert get_dialect("cml") is CML and get_dialect(" Hermes ").name == "hermes"


def test_default_frames_and_framing() -> None:
    assert get_dialect("hermes") == HermesDialect(CHATML, "turn")
    assert get_dialect("llama3") == Llama3Dialect(LLAMA3)
    assert get_dialect("mistral") == MistralDialect(MISTRAL)
    assert get_dialect("pythonic") == PythonicDialect(LLAMA3)
    d = get_dialect("hermes", framing="inline")
    assert isinstance(d, HermesDialect) and d.framing == "inline"


def test_unknown_names_are_clear_errors() -> None:
    with pytest.raises(UnknownDialect, match="known: cml, hermes"):
        get_dialect("klingon")
    with pytest.raises(ValueError, match="framing"):
        get_dialect("hermes", framing="sideways")
    assert issubclass(UnknownDialect, ProtocolError) and issubclass(UnknownDialect, AsyncLMError)


@pytest.mark.parametrize(("name", "dialect", "family"), [
    ("Qwen-Qwen2.5-7B-Instruct.jinja", "hermes", "chatml"),
    ("Qwen-Qwen3-0.6B.jinja", "hermes", "chatml"),
    ("NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja", "hermes", "chatml-tool"),
    ("NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use.jinja", "hermes", "chatml-tool"),
    ("meta-llama-Llama-3.1-8B-Instruct.jinja", "llama3", "llama3"),
    ("meta-llama-Llama-3.2-3B-Instruct.jinja", "llama3", "llama3"),
    ("meta-llama-Llama-3.3-70B-Instruct.jinja", "llama3", "llama3"),
    ("mistralai-Mistral-Nemo-Instruct-2407.jinja", "mistral", "mistral"),
    ("google-gemma-2-2b-it.jinja", "cml", None),
])
def test_detect_on_official_templates(name: str, dialect: str, family: str | None,
                                      template: Any) -> None:
    source = template(name)
    assert detect_dialect(source) == dialect
    d = get_dialect(dialect, chat_template=source)
    if family is not None:
        assert d.frame.family == family  # type: ignore[attr-defined]


def test_pythonic_on_a_qwen_template_gets_qwens_tool_turn(template: Any) -> None:
    d = get_dialect("pythonic", chat_template=template("Qwen-Qwen2.5-7B-Instruct.jinja"))
    assert isinstance(d, PythonicDialect) and d.frame == CHATML
    d = get_dialect("hermes", chat_template=template(
        "NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja"))
    assert d.frame == HERMES_TOOL  # type: ignore[attr-defined]


def test_detect_without_template() -> None:
    assert detect_dialect(None) == detect_dialect("") == "cml"
    assert detect_dialect("{{ messages }}") == "cml"
    assert detect_dialect("... [func_name1(params_name1=params_value1) ...") == "pythonic"


@pytest.mark.slow
def test_detect_the_bundled_model(qwen_vocab: Any) -> None:
    assert detect_dialect(qwen_vocab.chat_template) == "hermes"
    assert get_dialect("hermes", chat_template=qwen_vocab.chat_template).frame == CHATML  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", ["hermes", "llama3", "mistral", "pythonic"])
def test_system_prompts_place_the_formatted_tool_list_once(name: str) -> None:
    from asynclm.tools import Toolbox

    spec = {"type": "function", "function": {
        "name": "get_weather", "description": 'Weather of a "city"',
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}
    listing = Toolbox.from_openai([spec], handler=lambda n, a: None).describe()
    d: Any = get_dialect(name)
    formatted = d.format_tools(listing)
    text = d.system_prompt(listing)
    assert text == d.system_prompt(formatted) and text.count(formatted) == 1
    assert "get_weather" in formatted and "end your turn" in text
    assert "$c1" not in text or name == "mistral"
    assert ("$" in d.system_prompt(listing, futures=True)) and len(text) < 1500
    # an unknown listing is placed verbatim
    assert d.system_prompt("\ue002slot\ue003").count("\ue002slot\ue003") == 1


@pytest.mark.parametrize("name", DIALECTS)
def test_a_copied_result_is_never_a_call(name: str) -> None:
    """A model that copies a result payload back (small models do, at a line start) writes
    text, not a new call: the echo must not read as a call in its own dialect."""
    d = get_dialect(name)
    body = d.call_body(d.render_call("get_weather", {"city": "Paris"}, id="c1"))
    for payload in (d.echo(body, '{"temp_c": 11}'), d.echo(body, "11", same_as="c1"),
                    d.echo("{broken", "1")):
        p = d.parser()
        events = p.feed("\n" + payload + "\n") + p.close()
        assert not [e for e in events if isinstance(e, (Call, CallOpened, MalformedCall))], (
            name, payload)
