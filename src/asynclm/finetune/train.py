"""``asynclm finetune train``: LoRA supervised fine-tuning on the simulated transcripts.

The base model is a bundled GGUF file, loaded by transformers (``gguf_file=``, dequantized to
fp32; there is no other checkpoint on these machines). LoRA (peft) on every linear layer of the
decoder. One example per forward pass (no padding); ``batch`` examples are accumulated per
optimizer step; AdamW with linear warm-up (5% of the steps) then linear decay. Loss only on the
model's own text (:mod:`asynclm.finetune.tokens`). Examples longer than ``max_len`` tokens are
skipped (counted). The data order is a seeded shuffle per epoch, so a step number fixes the
position in the data: resuming needs only the adapter, the optimizer state and the step.

Layout of ``out``::

    checkpoints/step-000025/  adapter (peft), optimizer.pt, state.json
    adapter/                  the final adapter (peft format)
    summary.json              steps, losses, seconds per step, tokens per second, skipped

Needs the ``finetune`` extra (torch, transformers, peft, gguf, accelerate). Runs on a CUDA
device when there is one, else on the CPU with ``threads`` threads.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from asynclm.finetune.tokens import IGNORE, encode_example, trainable_fraction
from asynclm.models import model_path

__all__ = ["TARGET_MODULES", "TrainConfig", "load_base", "train"]

TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True, slots=True)
class TrainConfig:
    data: Path
    out: Path
    model: str = "qwen2.5-coder-0.5b"
    steps: int = 100
    max_len: int = 2048
    batch: int = 4
    lr: float = 2e-4
    rank: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: tuple[str, ...] = TARGET_MODULES
    save_every: int = 25
    threads: int = 1
    resume: bool = True
    seed: int = 0
    limit: int | None = None
    """Use only the first ``limit`` examples of the file (tests)."""
    model_path: Path | None = None
    """A GGUF file, or a Hugging Face model directory (tests), instead of the bundled
    ``model``."""
    extra: dict[str, Any] = field(default_factory=dict)


def _gguf(cfg: TrainConfig) -> Path:
    if cfg.model_path is not None:
        return cfg.model_path
    return model_path(cfg.model)


def load_tokenizer(gguf: Path, cache: Path | None = None) -> Any:
    """The GGUF file's tokenizer as a Hugging Face tokenizer (converting it takes ~20-60 s;
    with ``cache`` the converted tokenizer is saved there and reused). A directory is loaded
    as it is."""
    from transformers import AutoTokenizer

    if gguf.is_dir():
        return AutoTokenizer.from_pretrained(gguf)
    if cache is not None and (cache / "tokenizer_config.json").is_file():
        return AutoTokenizer.from_pretrained(cache)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    if cache is not None:
        tok.save_pretrained(cache)
    return tok


def load_base(gguf: Path) -> Any:
    """The dequantized base model (fp32); a directory is loaded as it is."""
    import torch
    from transformers import AutoModelForCausalLM

    if gguf.is_dir():
        return AutoModelForCausalLM.from_pretrained(gguf, dtype=torch.float32)
    return AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                                dtype=torch.float32)


def read_examples(path: Path, limit: int | None = None) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    return rows[:limit] if limit is not None else rows


def order(n: int, seed: int) -> Iterator[int]:
    """Example indices: a seeded shuffle per epoch, forever."""
    epoch = 0
    while True:
        idx = list(range(n))
        random.Random(f"{seed}:{epoch}").shuffle(idx)
        yield from idx
        epoch += 1


def _checkpoints(out: Path) -> list[Path]:
    return sorted((out / "checkpoints").glob("step-*"))


def _lr_at(step: int, cfg: TrainConfig) -> float:
    warm = max(1, round(0.05 * cfg.steps))
    if step < warm:
        return cfg.lr * (step + 1) / warm
    return cfg.lr * max(0.0, (cfg.steps - step) / max(1, cfg.steps - warm))


def train(cfg: TrainConfig, console: Any | None = None) -> dict[str, Any]:
    """Train (or resume) to ``cfg.steps`` optimizer steps; returns the summary it also writes."""
    import torch
    from peft import LoraConfig, set_peft_model_state_dict
    from safetensors.torch import load_file

    torch.manual_seed(cfg.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        torch.set_num_threads(cfg.threads)
    cfg.out.mkdir(parents=True, exist_ok=True)
    gguf = _gguf(cfg)
    t_load = time.perf_counter()
    tok = load_tokenizer(gguf, cfg.out / "tokenizer")
    examples = read_examples(cfg.data, cfg.limit)
    encoded_all = [encode_example(ex, tok) for ex in examples]
    encoded = [e for e in encoded_all if len(e[0]) <= cfg.max_len and any(x != IGNORE for x in e[1])]
    if not encoded:
        raise ValueError(f"no example fits max_len={cfg.max_len}")
    base = load_base(gguf)
    lora = LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                      target_modules=list(cfg.target_modules), task_type="CAUSAL_LM")
    model = with_lora(base, lora).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    load_s = time.perf_counter() - t_load

    start, history = 0, []
    ckpts = _checkpoints(cfg.out) if cfg.resume else []
    if ckpts:
        last = ckpts[-1]
        set_peft_model_state_dict(model, load_file(str(last / "adapter_model.safetensors")))
        opt.load_state_dict(torch.load(last / "optimizer.pt", map_location=device))
        state = json.loads((last / "state.json").read_text())
        if state.get("fingerprint") != _fingerprint(cfg):
            raise ValueError(f"{last} was made with other data or settings; use another --out "
                             "or --no-resume")
        start, history = int(state["step"]), list(state["history"])
    elif not cfg.resume and (cfg.out / "checkpoints").exists():
        shutil.rmtree(cfg.out / "checkpoints")

    stream = order(len(encoded), cfg.seed)
    for _ in range(start * cfg.batch):  # skip what earlier runs consumed
        next(stream)
    model.train()
    progress = _progress(console)
    step_times: list[float] = []
    cpu_times: list[float] = []  # process CPU time: comparable on a shared machine
    with progress:
        task = progress.add_task("train", total=cfg.steps, completed=start, loss=float("nan"))
        for step in range(start, cfg.steps):
            t0, c0 = time.perf_counter(), time.process_time()
            for g in opt.param_groups:
                g["lr"] = _lr_at(step, cfg)
            total_loss, n_tok, n_all = 0.0, 0, 0
            batch = [encoded[next(stream)] for _ in range(cfg.batch)]
            n_train = sum(sum(1 for x in lab if x != IGNORE) for _, lab in batch)
            for ids, labels in batch:
                loss_sum, k = _masked_loss(model, ids, labels, device)
                (loss_sum / max(1, n_train)).backward()
                total_loss += float(loss_sum.detach())
                n_tok += k
                n_all += len(ids)
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            dt = time.perf_counter() - t0
            step_times.append(dt)
            cpu_times.append(time.process_time() - c0)
            loss = total_loss / max(1, n_tok)
            history.append({"step": step + 1, "loss": loss, "seconds": dt,
                            "cpu_seconds": cpu_times[-1], "tokens": n_all,
                            "train_tokens": n_tok, "lr": _lr_at(step, cfg)})
            progress.update(task, advance=1, loss=loss)
            if console is not None and not console.is_terminal:  # logs get one line per step
                console.print(f"step {step + 1}/{cfg.steps} loss {loss:.4f} {dt:.1f} s "
                              f"{n_all} tokens", highlight=False)
            if (step + 1) % cfg.save_every == 0 or step + 1 == cfg.steps:
                _save(model, opt, cfg, step + 1, history)
    model.save_pretrained(cfg.out / "adapter")
    summary = {
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()},
        "device": device,
        "threads": torch.get_num_threads() if device == "cpu" else None,
        "gguf": str(gguf),
        "examples": len(examples),
        "used": len(encoded),
        "skipped_too_long": len(examples) - len(encoded),
        "trainable_token_share": trainable_fraction(encoded),
        "example_tokens": _quantiles([len(i) for i, _ in encoded_all]),
        "resumed_from": start,
        "load_seconds": load_s,
        "steps_this_run": len(step_times),
        "seconds_per_step": sum(step_times) / len(step_times) if step_times else None,
        "cpu_seconds_per_step": sum(cpu_times) / len(cpu_times) if cpu_times else None,
        "tokens_per_cpu_second": (
            sum(h["tokens"] for h in history[start:]) / sum(cpu_times) if cpu_times else None),
        "tokens_per_second": (
            sum(h["tokens"] for h in history[start:]) / sum(step_times) if step_times else None),
        "history": history,
        "adapter": str(cfg.out / "adapter"),
        "trainable_params": sum(p.numel() for p in params),
    }
    (cfg.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def with_lora(base: Any, lora: Any) -> Any:
    """``peft.get_peft_model``, without the deprecation warning peft triggers in transformers."""
    from peft import get_peft_model

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*",
                                category=FutureWarning)
        return get_peft_model(base, lora)


def _masked_loss(model: Any, ids: Sequence[int], labels: Sequence[int],
                 device: str) -> tuple[Any, int]:
    """Summed next-token cross-entropy over the trainable positions, and their number. The
    output layer runs only at those positions (about 15% of a sequence here), which saves
    most of the memory and time of the vocabulary-sized logits."""
    import torch
    import torch.nn.functional as F

    causal = model.get_base_model()
    x = torch.tensor([list(ids)], device=device)
    hidden = causal.model(input_ids=x).last_hidden_state[0]  # (T, H)
    target = torch.tensor(list(labels[1:]) + [IGNORE], device=device)
    keep = (target != IGNORE).nonzero(as_tuple=True)[0]
    logits = causal.lm_head(hidden[keep]).float()
    return F.cross_entropy(logits, target[keep], reduction="sum"), int(keep.numel())


def _fingerprint(cfg: TrainConfig) -> dict[str, Any]:
    """What must not change between a run and its resumption (the data order depends on it)."""
    return {"data_sha256": hashlib.sha256(cfg.data.read_bytes()).hexdigest(),
            "max_len": cfg.max_len, "batch": cfg.batch, "seed": cfg.seed, "limit": cfg.limit,
            "rank": cfg.rank, "alpha": cfg.alpha, "target_modules": list(cfg.target_modules),
            "model": str(cfg.model_path or cfg.model)}


def _save(model: Any, opt: Any, cfg: TrainConfig, step: int, history: Sequence[dict]) -> None:
    import torch

    d = cfg.out / "checkpoints" / f"step-{step:06d}"
    tmp = d.with_name(d.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(tmp)
    torch.save(opt.state_dict(), tmp / "optimizer.pt")
    (tmp / "state.json").write_text(json.dumps(
        {"step": step, "history": list(history), "fingerprint": _fingerprint(cfg)}))
    if d.exists():
        shutil.rmtree(d)
    tmp.rename(d)  # a checkpoint appears only once complete


def _quantiles(xs: Sequence[int]) -> dict[str, int]:
    s = sorted(xs)
    if not s:
        return {}
    return {"min": s[0], "p50": s[len(s) // 2], "p90": s[int(0.9 * (len(s) - 1))], "max": s[-1]}


class _NoProgress:
    def __enter__(self) -> _NoProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def add_task(self, *a: Any, **k: Any) -> int:
        return 0

    def update(self, *a: Any, **k: Any) -> None:
        return None


def _progress(console: Any | None) -> Any:
    if console is None:
        return _NoProgress()
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}"), TimeElapsedColumn(), TimeRemainingColumn(),
        console=console,
    )
