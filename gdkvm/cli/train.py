"""``gdkvm train``: train a variant on a prepared dataset with the paper's recipe (or resume a run)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.table import Table

from gdkvm.cli.common import (
    ARGV_META,
    DEVICE_OPTION_HELP,
    AugmentProfile,
    PresetName,
    Supervision,
    ThreadsOpt,
    console,
    progress_callback,
    start_long_command,
)
from gdkvm.errors import ConfigError
from gdkvm.utils.device import check_device_name


def _inside_torchrun() -> bool:
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def parse_model_set(items: list[str]) -> dict[str, Any]:
    """``["freeze_bn=true", "decay_form=official"]`` -> ``{"freeze_bn": True, "decay_form": "official"}``.

    Values are read as YAML scalars (numbers, true/false, strings).
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--model-set {item!r}: expected KEY=VALUE")
        try:
            out[key.strip()] = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError:
            raise ConfigError(f"--model-set {item!r}: value is not a YAML scalar") from None
    return out


def _print_result(run_dir: Path) -> None:
    done_file = run_dir / "train_done.json"
    table = Table(title=f"run {run_dir.name}", header_style="bold", show_header=False)
    table.add_column("item")
    table.add_column("value")
    table.add_row("folder", str(run_dir))
    if done_file.is_file():
        done = json.loads(done_file.read_text(encoding="utf-8"))
        table.add_row("iterations", str(done.get("iteration")))
        last_loss = done.get("last_loss")
        finite = isinstance(last_loss, (int, float)) and math.isfinite(last_loss)
        if not finite:  # written by an older version on resuming a finished run: read the log instead
            from gdkvm.engine.train import last_logged_loss

            last_loss = last_logged_loss(run_dir / "metrics.jsonl", int(done.get("iteration") or 0))
            finite = math.isfinite(last_loss)
        table.add_row("last loss", f"{last_loss:.4f}" if finite else "-")
        best = done.get("best_dice")
        table.add_row("best val Dice", "-" if best is None else f"{100 * best:.2f} (iteration {done.get('best_iteration')})")
    else:
        table.add_row("status", "stopped before the last iteration (continue with --resume)")
    for name in ("checkpoint_last.safetensors", "checkpoint_best.safetensors", "trainer_state.pt", "metrics.jsonl"):
        if (run_dir / name).is_file():
            table.add_row("file", name)
    console.print(table)
    console.print(f"next: [bold]gdkvm evaluate --run {run_dir}[/]", soft_wrap=True)


def train(
    ctx: typer.Context,
    data: Annotated[Path, typer.Option("--data", help="Prepared dataset folder (PREPARED/<dataset>, with train/ val/ test/).")],
    variant: Annotated[str, typer.Option("--variant", help="Model variant (see `gdkvm variants`).")] = "full",
    preset: Annotated[PresetName, typer.Option("--preset", help="Model size preset.")] = "paper",
    iterations: Annotated[int | None, typer.Option("--iterations", help="Training iterations (default: 1500).")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="Global batch (clips) (default: 10).")] = None,
    lr: Annotated[float | None, typer.Option("--lr", help="AdamW learning rate (default: 1e-4).")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed of init, data order and augmentation (default: 0).")] = None,
    supervision: Annotated[Supervision | None, typer.Option("--supervision", help="ends: first + last frame (paper); full: every labelled frame (default: ends).")] = None,
    device: Annotated[str | None, typer.Option("--device", help=DEVICE_OPTION_HELP + " Default: auto.")] = None,
    out: Annotated[Path, typer.Option("--out", help="Folder holding run folders.")] = Path("results/runs"),
    name: Annotated[str | None, typer.Option("--name", help="Run folder name (default: <dataset>-<variant>-<preset>).")] = None,
    val_every: Annotated[int | None, typer.Option("--val-every", help="Validate every N iterations (default: 250).")] = None,
    ckpt_every: Annotated[int | None, typer.Option("--ckpt-every", help="Checkpoint every N iterations (default: 250).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run from its last checkpoint.")] = False,
    backbone_weights: Annotated[list[str] | None, typer.Option("--backbone-weights", help="torchvision ResNet ImageNet weights (.pth / .safetensors) per trunk: key=PATH (key encoder, ResNet-50 in the paper) and value=PATH (value encoder, ResNet-18), repeatable. A bare PATH (once) goes into every encoder whose architecture matches the file. Each file is checked against its trunk and recorded with its sha256 in config.yaml.")] = None,
    nproc: Annotated[int, typer.Option("--nproc", help="Processes for DDP (launched with torchrun).")] = 1,
    workers: Annotated[int | None, typer.Option("--workers", help="DataLoader worker processes (default: 0).")] = None,
    amp: Annotated[bool | None, typer.Option("--amp/--no-amp", help="bf16 autocast on GPU (default: on).", show_default=False)] = None,
    augment: Annotated[bool | None, typer.Option("--augment/--no-augment", help="Training augmentations (default: on).", show_default=False)] = None,
    augment_profile: Annotated[AugmentProfile | None, typer.Option("--augment-profile", help="paper (the paper's four transforms) or robust (plus gain, haze, blur, speckle, shadows, shift; for other scanners) (default: paper).")] = None,
    model_set: Annotated[list[str] | None, typer.Option("--model-set", help="Model config override KEY=VALUE (repeatable), e.g. freeze_bn=true.")] = None,
    threads: ThreadsOpt = None,
) -> None:
    """Train a GDKVM variant: AdamW 1e-4, batch 10, 1500 iterations, grad-norm clip 3, CE + soft Dice.

    The run folder gets config.yaml, metrics.jsonl (loss, lr, grad norm, alpha/beta statistics per step,
    validation Dice), checkpoint_last / checkpoint_best (.safetensors) and trainer_state.pt for --resume.

    [bold]Examples[/]

      gdkvm train --data data/prepared/camus --variant full --preset paper

      gdkvm train --data data/prepared/camus --variant wo-alpha --preset tiny --iterations 20

      gdkvm train --data data/prepared/camus --variant full --resume

      gdkvm train --data data/prepared/camus --nproc 2 --device cpu

      gdkvm train --data data/prepared/camus --backbone-weights key=resnet50.pth --backbone-weights value=resnet18.pth
    """
    from gdkvm.engine.config import TrainConfig
    from gdkvm.engine.distributed import launch_torchrun, without_option
    from gdkvm.engine.inference import precision_name
    from gdkvm.engine.train import effective_train_config, train_run
    from gdkvm.models.weights import parse_backbone_weights

    given = {
        "iterations": iterations, "batch_size": batch_size, "lr": lr, "seed": seed,
        "supervision": supervision, "device": check_device_name(device) if device else None,
        "val_every": val_every, "ckpt_every": ckpt_every, "workers": workers, "amp": amp, "augment": augment,
        "augment_profile": augment_profile,
        "backbone_weights": parse_backbone_weights(backbone_weights),
        "model_overrides": parse_model_set(model_set) if model_set else None,
    }
    if given["model_overrides"]:
        from gdkvm.models.registry import get_variant, model_config

        if get_variant(variant).builder is None:  # a GDKVM variant: check the overrides before any work
            model_config(variant, preset, **given["model_overrides"])
    identity = TrainConfig(data=str(data), variant=variant, preset=preset, name=name or "")
    run_dir = out / identity.run_name

    if nproc > 1 and not _inside_torchrun():
        argv = ctx.meta.get(ARGV_META)
        if argv is None:
            raise ConfigError("--nproc: the command line is unknown here, so the torchrun workers cannot re-run "
                              "it (run gdkvm from the shell)")
        # each worker runs the user's own command line, minus the launcher flag
        console.print(f"launching {nproc} processes with torchrun", soft_wrap=True)
        launch_torchrun(nproc, ["gdkvm.cli.main", *without_option(argv, "--nproc")])
        _print_result(run_dir)
        return

    cfg = effective_train_config(identity, given, out, resume=resume)
    main_rank = os.environ.get("RANK", "0") == "0"
    local_rank = int(os.environ["LOCAL_RANK"]) if _inside_torchrun() else None
    if main_rank:
        console.print(f"[bold]{'resuming' if resume else 'training'}[/] {cfg.variant} ({cfg.preset}) on "
                      f"{cfg.data} -> {run_dir}", soft_wrap=True)
    start_long_command(cfg.device, lambda dev: precision_name(dev, cfg.amp), threads, preset=cfg.preset,
                       paper_detail=f"ResNet-50 encoder, {cfg.iterations} iterations of batch {cfg.batch_size}",
                       local_rank=local_rank, quiet=not main_rank)
    if main_rank:
        with progress_callback("train", total=cfg.iterations) as update:
            result = train_run(cfg, out, resume=resume, progress=update, log=console.print)
        if result.finished and result.iteration == result.start_iteration:
            console.print(f"the run is already complete (iteration {result.iteration} of {cfg.iterations}); "
                          "nothing to train (a larger --iterations continues it)", soft_wrap=True)
        if not _inside_torchrun():  # under torchrun the launching process prints the result
            _print_result(run_dir)
    else:
        train_run(cfg, out, resume=resume)
