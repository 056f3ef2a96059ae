"""``asynclm finetune data | train | export`` (typer + rich; torch etc. imported on use)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

finetune_app = typer.Typer(no_args_is_help=True,
                           help="Fine-tune a model to the interrupt protocol.")
console = Console(soft_wrap=True)


@finetune_app.command("data")
def data(
    out: Annotated[Path, typer.Option(help="JSONL file to write.")] = Path(
        "finetune/train.jsonl"),
    seed: Annotated[int, typer.Option(help="Split and simulation seed.")] = 0,
    fraction: Annotated[float, typer.Option(help="Train share of each category.")] = 0.25,
    max_turns: Annotated[int, typer.Option(help="Turns kept per multi-turn item.")] = 2,
    user_interrupts: Annotated[int, typer.Option(help="Joined examples with a user "
                                                      "interrupt.")] = 40,
    limit: Annotated[int | None, typer.Option(help="At most this many train items.")] = None,
    check: Annotated[bool, typer.Option(help="Check every transcript against its "
                                             "simulation.")] = True,
) -> None:
    """Simulated CML transcripts (interrupts, traps, user interrupts) from the BFCL train split."""
    from asynclm.finetune.data import DataConfig, check_example, write_jsonl

    cfg = DataConfig(seed=seed, fraction=fraction, max_turns=max_turns,
                     user_interrupts=user_interrupts, limit=limit)
    summary = write_jsonl(cfg, out)
    if check:
        bad = 0
        for line in out.read_text(encoding="utf-8").splitlines():
            ex = json.loads(line)
            problems = check_example(ex)
            if problems:
                bad += 1
                console.print(f"[red]{ex['id']}[/]: {'; '.join(problems)}")
        summary["check_failures"] = bad
        if bad:
            raise typer.Exit(1)
    console.print(json.dumps(summary, indent=2, default=str))


@finetune_app.command("train")
def train(
    data: Annotated[Path, typer.Option(help="JSONL from `asynclm finetune data`.")] = Path(
        "finetune/train.jsonl"),
    out: Annotated[Path, typer.Option(help="Output directory (checkpoints, adapter).")] = Path(
        "finetune/run"),
    model: Annotated[str, typer.Option(help="Bundled model name.")] = "qwen2.5-coder-0.5b",
    steps: Annotated[int, typer.Option(help="Optimizer steps in total.")] = 100,
    max_len: Annotated[int, typer.Option(help="Longest sequence in tokens; longer "
                                              "examples are skipped.")] = 2048,
    batch: Annotated[int, typer.Option(help="Examples per optimizer step "
                                            "(gradient accumulation).")] = 4,
    lr: Annotated[float, typer.Option(help="Learning rate.")] = 2e-4,
    rank: Annotated[int, typer.Option(help="LoRA rank.")] = 8,
    save_every: Annotated[int, typer.Option(help="Checkpoint every N steps.")] = 25,
    threads: Annotated[int, typer.Option(help="torch CPU threads.")] = 1,
    resume: Annotated[bool, typer.Option(help="Resume from the last checkpoint in OUT.")] = True,
    seed: Annotated[int, typer.Option(help="Shuffling and initialization seed.")] = 0,
) -> None:
    """LoRA SFT; loss only on the model's own text (not prompts, interrupts, user messages)."""
    from asynclm.finetune.train import TrainConfig
    from asynclm.finetune.train import train as run

    cfg = TrainConfig(data=data, out=out, model=model, steps=steps, max_len=max_len,
                      batch=batch, lr=lr, rank=rank, save_every=save_every, threads=threads,
                      resume=resume, seed=seed)
    summary = run(cfg, console=console)
    console.print(json.dumps(summary, indent=2, default=str))


@finetune_app.command("export")
def export(
    adapter: Annotated[Path, typer.Option(help="A PEFT adapter directory (train's OUT/adapter "
                                               "or a checkpoint).")] = Path(
        "finetune/run/adapter"),
    out: Annotated[Path, typer.Option(help="GGUF LoRA adapter file to write.")] = Path(
        "finetune/adapter.gguf"),
    model: Annotated[str, typer.Option(help="Base model (bundled name).")] = "qwen2.5-coder-0.5b",
    check: Annotated[bool, typer.Option(help="Load it in the llama.cpp engine and "
                                             "generate.")] = True,
) -> None:
    """Write the adapter as a GGUF LoRA adapter for the llama.cpp engine (``lora_path``)."""
    from asynclm.finetune.export import export_gguf_lora, smoke_test

    info = export_gguf_lora(adapter, out, base_model=model)
    if check:
        info["smoke_test"] = smoke_test(out, model)
    console.print(json.dumps(info, indent=2, default=str))
