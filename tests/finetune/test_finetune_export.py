"""``asynclm finetune export``: a PEFT adapter becomes a GGUF LoRA adapter that the llama.cpp
engine loads and applies (slow: needs llama-cpp-python, gguf and the bundled 0.5B model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SMALL_MODEL = "qwen2.5-coder-0.5b"


@pytest.fixture(scope="module")
def base() -> Path:
    pytest.importorskip("llama_cpp")
    pytest.importorskip("gguf")
    pytest.importorskip("safetensors")
    from asynclm.models import ModelError, model_path

    try:
        return model_path(SMALL_MODEL)
    except ModelError as e:
        pytest.skip(f"cannot pull {SMALL_MODEL}: {e}")


def _fake_adapter(base: Path, d: Path, *, scale: float, rank: int = 4, seed: int = 0) -> Path:
    """A PEFT-format adapter on q_proj/v_proj of layers 0-3, shapes read from the base GGUF;
    lora_B is ``scale`` times Gaussian noise (0 = an adapter that changes nothing)."""
    import gguf
    import numpy as np
    from safetensors.numpy import save_file

    shapes = {t.name: [int(x) for x in t.shape] for t in gguf.GGUFReader(str(base)).tensors}
    rng = np.random.default_rng(seed)
    tensors = {}
    for layer in range(4):
        for proj, g in (("q_proj", "attn_q"), ("v_proj", "attn_v")):
            n_in, n_out = shapes[f"blk.{layer}.{g}.weight"]  # ggml order: in, out
            key = f"base_model.model.model.layers.{layer}.self_attn.{proj}"
            tensors[f"{key}.lora_A.weight"] = rng.standard_normal((rank, n_in)).astype(np.float32)
            tensors[f"{key}.lora_B.weight"] = (
                scale * rng.standard_normal((n_out, rank))).astype(np.float32)
    d.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(d / "adapter_model.safetensors"))
    (d / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "r": rank, "lora_alpha": 2 * rank,
        "target_modules": ["q_proj", "v_proj"], "layers_to_transform": [0, 1, 2, 3],
        "task_type": "CAUSAL_LM"}))
    return d


def _generate(base: Path, lora: Path | None) -> str:
    import asyncio

    from asynclm.engines.base import ChatMessage
    from asynclm.engines.llamacpp import LlamaCppEngine

    kw = {"lora_path": str(lora)} if lora else {}

    async def go() -> str:
        async with LlamaCppEngine(base, n_ctx=256, n_threads=1, **kw) as engine:
            await engine.prefill(engine.tokenize_chat([ChatMessage("user", "Count to five.")]))
            toks = [await engine.step() for _ in range(8)]
            return engine.detokenize(toks).decode("utf-8", "replace")

    return asyncio.run(go())


def test_exported_adapter_loads_and_is_applied(base: Path, tmp_path: Path):
    from asynclm.finetune.export import export_gguf_lora, smoke_test

    plain = _generate(base, None)
    zero = export_gguf_lora(_fake_adapter(base, tmp_path / "zero", scale=0.0),
                            tmp_path / "zero.gguf", base_model=base)
    assert zero["arch"] == "qwen2" and zero["tensors"] == 8 and zero["alpha"] == 8.0
    assert _generate(base, tmp_path / "zero.gguf") == plain  # B = 0: the base model exactly
    export_gguf_lora(_fake_adapter(base, tmp_path / "big", scale=0.5),
                     tmp_path / "big.gguf", base_model=base)
    assert _generate(base, tmp_path / "big.gguf") != plain  # the adapter is applied
    out = smoke_test(tmp_path / "zero.gguf", base, max_tokens=4)
    assert out["text"]


def test_export_rejects_a_mismatched_adapter(base: Path, tmp_path: Path):
    from asynclm.finetune.export import export_gguf_lora

    d = _fake_adapter(base, tmp_path / "a", scale=0.1)
    cfg = json.loads((d / "adapter_config.json").read_text())
    cfg["r"] = 2
    (d / "adapter_config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="rank"):
        export_gguf_lora(d, tmp_path / "a.gguf", base_model=base)


@pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing.*:FutureWarning")
def test_llamacpp_applies_the_same_change_as_peft(base: Path, tmp_path: Path):
    """The exported adapter moves llama.cpp's next-token logits the way PEFT moves the
    transformers model's (same orientation of A/B, same alpha/rank scale)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    peft = pytest.importorskip("peft")
    import llama_cpp
    import numpy as np

    from asynclm.finetune.export import export_gguf_lora
    from asynclm.finetune.train import load_base

    torch.set_num_threads(1)
    adapter = _fake_adapter(base, tmp_path / "a", scale=0.02)
    export_gguf_lora(adapter, tmp_path / "a.gguf", base_model=base)
    ids = [151644, 872, 198, 6023, 151645, 198, 151644, 77091, 198]  # ChatML "user: hi", assistant

    def llama(lora: bool) -> np.ndarray:
        kw = {"lora_path": str(tmp_path / "a.gguf")} if lora else {}
        llm = llama_cpp.Llama(str(base), n_ctx=64, n_threads=1, verbose=False, **kw)
        llm.eval(ids)
        ptr = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
        out = np.ctypeslib.as_array(ptr, shape=(llm.n_vocab(),)).copy()
        llm.close()
        return out

    hf = load_base(base)
    with torch.no_grad():
        before = hf(input_ids=torch.tensor([ids])).logits[0, -1].numpy().copy()
        model = peft.PeftModel.from_pretrained(hf, str(adapter))
        after = model(input_ids=torch.tensor([ids])).logits[0, -1].numpy()
    d_hf, d_llama = after - before, llama(True) - llama(False)
    assert np.linalg.norm(d_hf) > 1.0  # the adapter matters
    assert np.corrcoef(d_hf, d_llama)[0, 1] > 0.95
    assert 0.8 < np.linalg.norm(d_llama) / np.linalg.norm(d_hf) < 1.25
