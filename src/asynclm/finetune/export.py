"""``asynclm finetune export``: a PEFT LoRA adapter as a GGUF LoRA adapter for llama.cpp.

The file follows llama.cpp's adapter format (what its ``convert_lora_to_gguf.py`` writes):
``general.architecture`` of the base model, ``general.type = "adapter"``, ``adapter.type =
"lora"``, ``adapter.lora.alpha``, and for every adapted weight ``W`` (GGUF name, e.g.
``blk.3.attn_q.weight``) two F32 tensors ``W.lora_a`` (PEFT ``lora_A``, shape rank × in) and
``W.lora_b`` (PEFT ``lora_B``, out × rank). llama.cpp applies ``W x + (alpha / rank) · B A x``
— PEFT's scaling. Load it with ``LlamaCppEngine(path, lora_path=str(adapter))`` (extra keyword
arguments go to ``llama_cpp.Llama``).

Needs ``gguf`` and ``safetensors`` (extra ``finetune``); torch only to read a ``.bin`` adapter.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

from asynclm.engines.base import ChatMessage
from asynclm.engines.llamacpp import LlamaCppEngine
from asynclm.models import model_path

__all__ = ["export_gguf_lora", "hf_to_gguf_name", "smoke_test"]

_KEY = re.compile(r"^(?:base_model\.model\.)?(?P<w>.+)\.lora_(?P<ab>[AB])(?:\.default)?\.weight$")


def _arch(base: Path) -> tuple[str, int]:
    import gguf

    r = gguf.GGUFReader(str(base))
    f = r.fields["general.architecture"]
    arch = bytes(f.parts[f.data[0]]).decode()
    blocks = r.fields[f"{arch}.block_count"]
    return arch, int(blocks.parts[blocks.data[0]][0])


def hf_to_gguf_name(hf_weight: str, arch: str, n_blocks: int) -> str:
    """The GGUF tensor name of a Hugging Face weight (``model.layers.0.self_attn.q_proj`` ->
    ``blk.0.attn_q.weight``)."""
    import gguf

    arch_id = next(a for a, name in gguf.MODEL_ARCH_NAMES.items() if name == arch)
    tmap = gguf.get_tensor_name_map(arch_id, n_blocks)
    name = tmap.get_name(hf_weight + ".weight", try_suffixes=(".weight",))
    if name is None:
        raise ValueError(f"no GGUF name for {hf_weight!r} ({arch})")
    return name


def _load_adapter(adapter: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    st = adapter / "adapter_model.safetensors"
    if st.is_file():
        from safetensors.numpy import load_file

        return cfg, load_file(str(st))
    import torch

    sd = torch.load(adapter / "adapter_model.bin", map_location="cpu")
    return cfg, {k: v.float().numpy() for k, v in sd.items()}


def export_gguf_lora(adapter: Path, out: Path, *, base_model: str | Path) -> dict[str, Any]:
    """Write ``adapter`` (a PEFT directory) as a GGUF LoRA adapter for ``base_model`` (a bundled
    name or a GGUF path). Returns what was written."""
    import gguf
    import numpy as np

    base = Path(base_model) if str(base_model).endswith(".gguf") else _bundled(str(base_model))
    arch, n_blocks = _arch(base)
    cfg, tensors = _load_adapter(adapter)
    if cfg.get("use_dora") or cfg.get("modules_to_save"):
        raise ValueError("only plain LoRA adapters can be exported (no DoRA, no modules_to_save)")
    rank = int(cfg["r"])
    alpha = float(cfg.get("lora_alpha", rank))
    pairs: dict[str, dict[str, Any]] = {}
    for key, value in tensors.items():
        m = _KEY.match(key)
        if m is None:
            raise ValueError(f"unexpected tensor in the adapter: {key}")
        pairs.setdefault(m["w"], {})[m["ab"]] = value
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(out), arch)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
    names = []
    for w, ab in sorted(pairs.items()):
        if set(ab) != {"A", "B"}:
            raise ValueError(f"{w}: lora_A and lora_B expected")
        a = np.ascontiguousarray(ab["A"], dtype=np.float32)  # rank x in
        b = np.ascontiguousarray(ab["B"], dtype=np.float32)  # out x rank
        if a.shape[0] != rank or b.shape[1] != rank:
            raise ValueError(f"{w}: rank {a.shape[0]}/{b.shape[1]}, config says {rank}")
        name = hf_to_gguf_name(w, arch, n_blocks)
        writer.add_tensor(name + ".lora_a", a)
        writer.add_tensor(name + ".lora_b", b)
        names.append(name)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return {"out": str(out), "base": str(base), "arch": arch, "rank": rank, "alpha": alpha,
            "tensors": len(names), "bytes": out.stat().st_size}


def _bundled(name: str) -> Path:
    return model_path(name)


def smoke_test(adapter_gguf: Path, base_model: str | Path, *, prompt: str = "Say OK.",
               max_tokens: int = 8, threads: int = 1) -> dict[str, Any]:
    """Load the base model with the adapter in the llama.cpp engine and generate greedily;
    returns the text."""

    base = Path(base_model) if str(base_model).endswith(".gguf") else _bundled(str(base_model))

    async def go() -> str:
        async with LlamaCppEngine(base, n_ctx=512, n_threads=threads,
                                  lora_path=str(adapter_gguf)) as engine:
            await engine.prefill(engine.tokenize_chat([ChatMessage("user", prompt)]))
            toks = []
            for _ in range(max_tokens):
                t = await engine.step()
                if engine.is_eos(t):
                    break
                toks.append(t)
            return engine.detokenize(toks).decode("utf-8", "replace")

    text = asyncio.run(go())
    return {"prompt": prompt, "text": text}
