"""``asynclm finetune train`` on a tiny random Qwen2 model: steps run, the loss is masked,
checkpoints are written and a later run resumes from them. Skipped without the ``finetune``
extra (torch, transformers, peft)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

from asynclm.finetune.train import TrainConfig, order, train  # noqa: E402

EX = {"messages": [
    {"role": "system", "content": "You can call functions."},
    {"role": "user", "content": "weather in paris"},
    {"role": "assistant",
     "content": "[CALL] c1 [HEAD] get_weather(city=\"paris\") [END]\n[TRAP][END]"
                "[INTR] c1 [HEAD] 18 [END]\nit is 18",
     "train": [[0, 55], [81, 89]]},
]}


def _tiny_model(d: Path) -> Path:
    """A 2-layer Qwen2 with a word-level tokenizer, saved as a Hugging Face directory."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    words = set()
    for m in EX["messages"]:
        words |= set(pre_tokenizers.Whitespace().pre_tokenize_str(m["content"]))
    vocab = {w: i for i, w in enumerate(["<unk>", "<|im_start|>", "<|im_end|>", "\n"]
                                        + sorted({w for w, _ in words} | {"system", "user",
                                                                          "assistant"}))}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>",
                                  additional_special_tokens=["<|im_start|>", "<|im_end|>"])
    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=len(vocab), hidden_size=32, intermediate_size=64,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=256)
    Qwen2ForCausalLM(cfg).save_pretrained(d)
    tok.save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("tiny")
    data = root / "train.jsonl"
    data.write_text("\n".join(json.dumps(EX) for _ in range(3)) + "\n")
    return _tiny_model(root / "model"), data


def _cfg(tiny: tuple[Path, Path], out: Path, steps: int, **kw) -> TrainConfig:
    model, data = tiny
    return TrainConfig(data=data, out=out, model_path=model, steps=steps, batch=2,
                       max_len=256, save_every=2, lr=1e-2, rank=4, dropout=0.0, **kw)


def test_trains_checkpoints_and_resumes(tiny, tmp_path: Path):
    out = tmp_path / "run"
    first = train(_cfg(tiny, out, 2))
    assert first["steps_this_run"] == 2 and first["resumed_from"] == 0
    assert (out / "checkpoints" / "step-000002" / "optimizer.pt").is_file()
    assert (out / "adapter" / "adapter_config.json").is_file()
    assert 0 < first["trainable_token_share"] < 1
    second = train(_cfg(tiny, out, 4))
    assert second["resumed_from"] == 2 and second["steps_this_run"] == 2
    assert [h["step"] for h in second["history"]] == [1, 2, 3, 4]
    assert second["history"][-1]["loss"] < first["history"][0]["loss"]  # it learns
    # the same 4 steps in one go land on the same loss: resuming loses nothing
    straight = train(_cfg(tiny, tmp_path / "straight", 4))
    assert straight["history"][-1]["loss"] == pytest.approx(second["history"][-1]["loss"], rel=1e-4)


def test_resume_refuses_other_settings(tiny, tmp_path: Path):
    out = tmp_path / "run"
    train(_cfg(tiny, out, 2))
    model, data = tiny
    with pytest.raises(ValueError, match="other data or settings"):
        train(TrainConfig(data=data, out=out, model_path=model, steps=3, batch=1, max_len=256,
                          save_every=2, rank=4, dropout=0.0))


def test_loss_counts_only_trainable_tokens(tiny, tmp_path: Path):
    s = train(_cfg(tiny, tmp_path / "r", 1))
    h = s["history"][0]
    assert 0 < h["train_tokens"] < h["tokens"]


def test_too_long_examples_are_skipped(tiny, tmp_path: Path):
    with pytest.raises(ValueError, match="max_len"):
        train(TrainConfig(data=tiny[1], out=tmp_path / "x", model_path=tiny[0], steps=1,
                          max_len=5))


def test_order_is_a_seeded_shuffle_per_epoch():
    it = order(4, 0)
    first, second = [next(it) for _ in range(4)], [next(it) for _ in range(4)]
    assert sorted(first) == sorted(second) == [0, 1, 2, 3]
    it2 = order(4, 0)
    assert [next(it2) for _ in range(8)] == first + second


def test_masked_loss_equals_the_usual_shifted_loss(tiny):
    from peft import LoraConfig

    from asynclm.finetune.tokens import encode_example
    from asynclm.finetune.train import _masked_loss, load_base, load_tokenizer, with_lora

    model_dir, _ = tiny
    tok = load_tokenizer(model_dir)
    ids, labels = encode_example(EX, tok)
    model = with_lora(load_base(model_dir), LoraConfig(r=2, target_modules=["q_proj"]))
    total, k = _masked_loss(model, ids, labels, "cpu")
    ref = model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels])).loss
    assert k == sum(1 for v in labels[1:] if v != -100)
    assert float(total.detach()) / k == pytest.approx(float(ref.detach()), rel=1e-5)
