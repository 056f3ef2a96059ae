"""The decode loop's context bookkeeping (runtime/context.py): sampled tokens, rollback."""

from __future__ import annotations

from asynclm.runtime.context import Context

# A toy vocabulary: token id -> bytes (200 and 201 together are "é" in UTF-8).
VOCAB = {1: b"ab", 2: b"cd", 3: b"\n", 4: b"ef", 200: b"\xc3", 201: b"\xa9", 9: b"<eos>"}


def detok(tokens):
    return b"".join(VOCAB[t] for t in tokens)


def sample_all(ctx: Context, tokens: list[int]) -> str:
    text = ""
    for t in tokens:
        text += ctx.sample(t, len(text))
    return text


def test_prompt_then_sampled_tokens() -> None:
    ctx = Context(detok)
    ctx.set_prompt([7, 8])
    assert ctx.prompt_len == 2 and ctx.line_start
    assert sample_all(ctx, [1, 2]) == "abcd"
    assert ctx.tokens == [7, 8, 1, 2] and ctx.generated == [1, 2] and len(ctx) == 4
    assert ctx.sampled_text() == "abcd" and not ctx.line_start
    ctx.sample(3, 4)
    assert ctx.line_start


def test_a_character_split_over_tokens_comes_out_whole() -> None:
    ctx = Context(detok)
    ctx.set_prompt([])
    assert ctx.sample(200, 0) == ""
    assert ctx.sample(201, 0) == "é"


def test_injected_tokens_are_not_sampled_text() -> None:
    ctx = Context(detok)
    ctx.set_prompt([7])
    sample_all(ctx, [1])
    ctx.inject([4, 3], ends_line=True)
    ctx.sample_eos(9)
    assert ctx.tokens == [7, 1, 4, 3, 9] and ctx.sampled_text() == "ab" and ctx.line_start


def test_cut_at_a_token_boundary() -> None:
    ctx = Context(detok)
    ctx.set_prompt([7])
    sample_all(ctx, [1, 2, 4])  # "ab" "cd" "ef" at offsets 0, 2, 4
    cut = ctx.cut_at(2)
    assert (cut.keep_tokens, cut.keep, cut.first_removed, cut.removed) == (2, "", 2, 2)
    ctx.truncate(cut.keep_tokens)
    assert ctx.tokens == [7, 1] and ctx.sampled_text() == "ab"


def test_cut_inside_a_token_keeps_its_first_part() -> None:
    ctx = Context(detok)
    ctx.set_prompt([7])
    sample_all(ctx, [1, 2, 4])
    cut = ctx.cut_at(3)  # inside "cd": "c" is kept, re-tokenized by the caller
    assert (cut.keep_tokens, cut.keep, cut.keep_at, cut.first_removed, cut.removed) == (
        2, "c", 2, 2, 2)
    ctx.truncate(cut.keep_tokens)
    ctx.keep(cut, [55])
    assert ctx.tokens == [7, 1, 55] and ctx.sampled_text() == "abc"
    # the kept part is sampled text again: a later cut can remove it
    again = ctx.cut_at(2)
    assert (again.keep_tokens, again.keep, again.first_removed) == (2, "", 55)


def test_cut_at_the_end_of_the_last_token_keeps_its_text() -> None:
    ctx = Context(detok)
    ctx.set_prompt([7])
    sample_all(ctx, [1])
    ctx.inject([4], ends_line=False)
    cut = ctx.cut_at(2)  # after "ab": the injected token goes, "ab" is put back
    assert (cut.keep_tokens, cut.keep, cut.first_removed, cut.removed) == (1, "ab", 1, 2)


def test_truncate_sets_line_start_from_what_is_left() -> None:
    ctx = Context(detok)
    ctx.set_prompt([7])
    sample_all(ctx, [1, 3, 2])
    assert not ctx.line_start
    ctx.truncate(3)  # ends with "\n"
    assert ctx.line_start and ctx.sampled_text() == "ab\n"
    ctx.truncate(2)
    assert not ctx.line_start
    ctx.truncate(1)  # back to the prompt
    assert ctx.line_start and ctx.sampled_text() == ""
