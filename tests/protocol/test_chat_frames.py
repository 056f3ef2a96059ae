"""Chat frames: the turn framing of each template family equals what its official template
renders for consecutive tool messages after an assistant message with tool calls."""

from __future__ import annotations

import json
from typing import Any

import pytest

from asynclm.protocol.chat_frames import (
    CHATML,
    FRAMES,
    HERMES_TOOL,
    LLAMA3,
    MISTRAL,
    ChatFrame,
    frame_family,
    frame_for_template,
    get_frame,
)


def _batch(frame: ChatFrame, payloads: list[tuple[str, str]], framing: str = "turn") -> str:
    """A batch assembled from the frame's strings (what dialects write around escaped text)."""
    turn = framing == "turn"
    out = frame.turn_close + frame.tool_open if turn else ""
    for k, (head, p) in enumerate(payloads):
        before, after = frame.item(head, framing=framing)  # type: ignore[arg-type]
        out += (frame.item_sep if turn and k else "") + before + p + after
    return out + (frame.tool_close + frame.assistant_open if turn else "")


def test_families() -> None:
    assert set(FRAMES) == {"chatml", "chatml-tool", "llama3", "mistral"}
    assert get_frame("llama3") is LLAMA3
    with pytest.raises(KeyError, match="known"):
        get_frame("nope")
    assert frame_family(None) is None and frame_family("plain") is None
    assert frame_for_template("x <|im_start|> y") is CHATML
    assert frame_for_template("<|im_start|>tool") is HERMES_TOOL
    assert frame_for_template("<|start_header_id|>") is LLAMA3
    assert frame_for_template("[INST]") is MISTRAL
    assert frame_for_template("?", default=LLAMA3) is LLAMA3


def test_chatml_strings() -> None:
    assert _batch(CHATML, [("c1", "A")]) == (
        "<|im_end|>\n<|im_start|>user\n<tool_response>\nA\n</tool_response><|im_end|>\n"
        "<|im_start|>assistant\n")
    assert _batch(CHATML, [("c1", "A")], "inline") == "<tool_response>\nA\n</tool_response>\n"


CASES = [
    ("Qwen-Qwen2.5-7B-Instruct.jinja", CHATML),
    ("Qwen-Qwen3-0.6B.jinja", CHATML),
    ("NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja", HERMES_TOOL),
    ("meta-llama-Llama-3.1-8B-Instruct.jinja", LLAMA3),
    ("meta-llama-Llama-3.2-3B-Instruct.jinja", LLAMA3),
    ("mistralai-Mistral-Nemo-Instruct-2407.jinja", MISTRAL),
]


@pytest.mark.parametrize(("name", "frame"), CASES)
@pytest.mark.parametrize("n", [1, 2, 3])
def test_turn_framing_is_the_templates(name: str, frame: ChatFrame, n: int, template: Any,
                                       render_chat: Any) -> None:
    """Render [user, assistant+calls, tool x n] and [user, assistant+calls] (without the end of
    the assistant turn: the model's end-of-generation, rolled back by the runtime): the
    difference is the frame's batch."""
    source = template(name)
    assert frame_for_template(source) == frame
    ids = ["abc123def", "bcd234efg", "cde345fgh"][:n]
    calls = [{"id": i, "type": "function", "function": {"name": "f", "arguments": {"k": k}}}
             for k, i in enumerate(ids)]
    payloads = [f'{{"v": {k}}}' for k in range(n)]
    msgs: list[dict[str, Any]] = [{"role": "user", "content": "q"},
                                  {"role": "assistant", "content": "", "tool_calls": calls}]
    # Llama 3's template quotes a string content (tojson) and writes a mapping as JSON: a
    # native payload (a JSON object) is the latter
    contents: list[Any] = [json.loads(p) for p in payloads] if frame is LLAMA3 else payloads
    msgs += [{"role": "tool", "content": c, "tool_call_id": i}
             for c, i in zip(contents, ids, strict=True)]
    extra: dict[str, Any] = {}
    if frame is LLAMA3:  # 3.1 accepts one call per message; the frame is the same per result
        msgs[1]["tool_calls"] = calls[:1]
    full = render_chat(source, msgs, **extra)
    if "<think>" in source:  # Qwen3 renders the last assistant message with a think block:
        # render a later user message too, and cut it off
        before = render_chat(source, [*msgs[:2], {"role": "user", "content": "zz"}],
                             add_generation_prompt=False)
        before = before[: before.index("<|im_start|>user\nzz")]
    else:
        before = render_chat(source, msgs[:2], add_generation_prompt=False, **extra)
    # the assistant message without its end of turn
    assert before.endswith(frame.turn_close)
    head = before[: len(before) - len(frame.turn_close)]
    if frame is MISTRAL:  # its template adds no generation prompt: a new turn never opens
        assert frame.assistant_open == ""
    assert full == head + _batch(frame, list(zip(ids, payloads, strict=True)))
