"""Loss masks: only what the model writes carries loss (no torch needed)."""

from __future__ import annotations

from asynclm.finetune.tokens import IGNORE, encode_example, pieces


class CharTokenizer:
    """One token per character (code point), special strings as one token."""

    SPECIAL = {"<|im_start|>": -1, "<|im_end|>": -2}

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        if text in self.SPECIAL:
            return [self.SPECIAL[text]]
        return [ord(c) for c in text]


EX = {"messages": [
    {"role": "system", "content": "SYS"},
    {"role": "user", "content": "Q?"},
    {"role": "assistant",
     "content": "[CALL] c1 [HEAD] f() [END]\n[TRAP][END][INTR] c1 [HEAD] 42 [END]\nIt is 42.",
     "train": [[0, 38], [64, 73]]},
]}


def _trained_text(ex: dict) -> str:
    ids, labels = encode_example(ex, CharTokenizer())
    assert len(ids) == len(labels)
    out = []
    for t, lab in zip(ids, labels):
        if lab != IGNORE:
            assert lab == t
            out.append({-1: "<S>", -2: "<E>"}.get(t, chr(t) if t > 0 else "?"))
    return "".join(out)


def test_loss_only_on_the_models_own_text():
    text = _trained_text(EX)
    assert text == "[CALL] c1 [HEAD] f() [END]\n[TRAP][END]It is 42.<E>"
    assert "SYS" not in text and "Q?" not in text and "[INTR]" not in text


def test_pieces_are_chatml():
    joined = "".join(t for t, _ in pieces(EX))
    assert joined == (
        "<|im_start|>system\nSYS<|im_end|>\n<|im_start|>user\nQ?<|im_end|>\n"
        "<|im_start|>assistant\n" + EX["messages"][2]["content"] + "<|im_end|>\n")


def test_multi_turn_trains_every_assistant_turn():
    ex = {"messages": EX["messages"] + [
        {"role": "user", "content": "More?"},
        {"role": "assistant", "content": "No.", "train": [[0, 3]]}]}
    assert _trained_text(ex).endswith("It is 42.<E>No.<E>")
