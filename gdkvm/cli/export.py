"""``gdkvm export``: a trained run's model as a per-frame streaming step (TorchScript or ONNX)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gdkvm.cli.common import CheckpointChoice, ExportFormat, OldBatchOpt, console, renamed_option


def export(
    out: Annotated[Path, typer.Option("--out", help="File to write (e.g. step.pt or step.onnx); FILE.json gets the input/output names and state shapes.")],
    run: Annotated[Path | None, typer.Option("--run", help="Trained run folder (see --checkpoint).")] = None,
    weights: Annotated[Path | None, typer.Option("--weights", help="A checkpoint file instead of a run folder.")] = None,
    fmt: Annotated[ExportFormat, typer.Option("--format", help="torchscript (torch.jit.trace) or onnx (torch.onnx.export).")] = "torchscript",
    checkpoint: Annotated[CheckpointChoice, typer.Option("--checkpoint", help="Run checkpoint (auto: best, else last).")] = "auto",
    size: Annotated[int | None, typer.Option("--size", help="Frame size (px) of the step (default: the training size).")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Batch of the step (fixed in the graph).")] = 1,
    old_batch: OldBatchOpt = None,
) -> None:
    """Export one streaming step: (frame, *state) -> (logits, *new_state), shapes fixed, state starts at zeros.

    Rules with a constant-size state export (gdr, linear, delta, the gdr ablations, gka); softmax memory
    grows with every frame and does not. See docs/export.md for the loop.

    [bold]Examples[/]

      gdkvm export --run results/runs/camus-full-paper --format torchscript --out gdkvm_step.pt

      gdkvm export --run results/runs/camus-full-paper --format onnx --out gdkvm_step.onnx
    """
    from gdkvm.errors import ConfigError, DataError
    from gdkvm.models.export import export_step
    from gdkvm.models.weights import load_model
    from gdkvm.predict.segmenter import _run_variant, checkpoint_input_size, find_checkpoint, training_size

    batch = renamed_option("--batch-size", batch_size, 1, "--batch", old_batch)
    if (run is None) == (weights is None):
        raise ConfigError("give exactly one of --run RUN or --weights FILE")
    if run is not None:
        ckpt, variant = find_checkpoint(run, checkpoint), _run_variant(Path(run))
    else:
        ckpt, variant = Path(weights), None
        if not ckpt.is_file():
            raise DataError(ckpt, "weights file not found")
    model = load_model(ckpt, variant=variant).eval()
    size = size or checkpoint_input_size(ckpt) or (training_size(Path(run)) if run is not None else None)
    if size is None:
        raise ConfigError(f"cannot tell the model's training frame size ({ckpt} has no input_size metadata); "
                          "pass --size N")
    spec = export_step(model, out, fmt, size, batch)
    console.print(f"exported {spec.variant or 'model'} ({spec.memory_rule}) step from {ckpt} -> {out} "
                  f"({fmt}, frame {batch}x1x{size}x{size}, state {', '.join(spec.state_names)}); "
                  f"spec: {out.name}.json", soft_wrap=True)
