"""`gdkvm prepare`: write the synthetic phantom, or turn CAMUS / EchoNet-Dynamic / a generic folder into a
prepared store."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from gdkvm.cli.common import (
    CamusSplit,
    ClipForm,
    GrayMode,
    LabelSet,
    MaskFill,
    Protocol,
    SamplingRule,
    TracingRows,
    console,
    progress_callback,
)
from gdkvm.data.prepare_toolkit import SEARCH_BELOW_FLAG
from gdkvm.data.store import empty_split_note

if TYPE_CHECKING:
    from gdkvm.data.store import PrepareSummary

prepare_app = typer.Typer(
    help="Prepare datasets: the synthetic phantom, CAMUS, EchoNet-Dynamic or a folder of your own videos and "
    "masks -> clips in data/prepared.\n\n"
    "[bold]Examples[/]\n\n"
    "  gdkvm prepare synthetic --out data/raw/synthetic --patients 20\n\n"
    "  gdkvm prepare camus --root data/raw/synthetic/CAMUS_public\n\n"
    "  gdkvm prepare echonet --root /datasets/EchoNet-Dynamic --size 128\n\n"
    "  gdkvm prepare folder --root /datasets/my-echo --size 128",
    rich_markup_mode="rich",
    no_args_is_help=True,
)

DEFAULT_OUT = Path("data/prepared")
MAX_BAD_SHOWN = 20


RootOpt = Annotated[
    Path,
    typer.Option("--root", help="The dataset folder itself (CAMUS: the folder holding database_nifti/; "
                 "EchoNet-Dynamic: the one holding FileList.csv). See --search-below.", show_default=False),
]
SearchBelowOpt = Annotated[
    bool,
    typer.Option(SEARCH_BELOW_FLAG, help="When --root is not the dataset folder, look for it up to two levels "
                 "below --root (exactly one must be found); the folder used is printed and recorded."),
]
OutOpt = Annotated[
    Path, typer.Option("--out", help="Prepared-store folder; the dataset goes in OUT/<dataset>/.")
]
SamplingOpt = Annotated[
    SamplingRule, typer.Option("--sampling", help="Frame rule: floor (MemSAM) or rint (GDKVM re-release).")
]
ProtocolSamplingOpt = Annotated[
    SamplingRule | None,
    typer.Option("--sampling", help="Frame rule: floor (MemSAM) or rint (GDKVM re-release). "
                 "Default: the protocol's, else floor.", show_default=False),
]
ProtocolFramesOpt = Annotated[
    int | None,
    typer.Option("--frames", min=2, help="Frames per clip, first = ED (or earlier), last = ES (or later). "
                 "Default: the protocol's, else 10.", show_default=False),
]


def _protocol_opt(what: str) -> object:
    return typer.Option(
        "--protocol",
        help=f"Set {what} together, exactly as the source does: gdkvm (the GDKVM re-release) or memsam "
        f"(MemSAM). An option given explicitly overrides the protocol's value (store.json notes it). "
        f"Without it, each option takes its own default. See docs/store.md, Protocols.",
        show_default=False,
    )
FramesOpt = Annotated[
    int,
    typer.Option("--frames", min=2, help="Frames per clip, first = ED (or earlier), last = ES (or later)."),
]
StrictOpt = Annotated[
    bool, typer.Option("--strict", help="Stop at the first bad case instead of skipping and listing it.")
]


def _print_summary(summary: PrepareSummary) -> None:
    """Counts per split, skipped bad cases with reasons, notes, a warning per
    empty split, and where the store is."""
    if summary.up_to_date:
        console.print(
            f"[green]up to date[/]: {escape(str(summary.out_dir))} already holds these inputs with these options; "
            "nothing rewritten",
            soft_wrap=True,
        )
    table = Table(title=f"prepared {summary.dataset}", header_style="bold")
    table.add_column("split")
    table.add_column("cases", justify="right")
    for split, count in summary.counts.items():
        table.add_row(split, str(count))
    table.add_row("[bold]total[/]", f"[bold]{summary.total}[/]")
    if summary.untraced:
        table.add_row("[dim]untraced (skipped)[/]", f"[dim]{summary.untraced}[/]")
    table.add_row(
        "[yellow]bad cases (skipped)[/]" if summary.bad_cases else "bad cases", str(len(summary.bad_cases))
    )
    console.print(table)
    if summary.bad_cases:
        console.print("[yellow]skipped bad cases[/]:")
        for case in summary.bad_cases[:MAX_BAD_SHOWN]:
            console.print(f"  {case.file}: {case.problem}", soft_wrap=True, markup=False)
        if len(summary.bad_cases) > MAX_BAD_SHOWN:
            console.print(
                f"  ... and {len(summary.bad_cases) - MAX_BAD_SHOWN} more (all listed in store.json)"
            )
    empty = {empty_split_note(s) for s in summary.empty_splits}
    for note in summary.notes:
        if note not in empty:
            console.print(f"note: {note}", soft_wrap=True, markup=False)
    for split in summary.empty_splits:
        console.print(f"[yellow]warning:[/] split '{split}' has 0 cases (noted in store.json); check that "
                      f"--root is the dataset you meant", soft_wrap=True)
    console.print(f"store: {summary.out_dir}  ({summary.elapsed_s:.1f} s)", soft_wrap=True, markup=False)


def _print_source(dataset: str, root: Path, folder: Path) -> None:
    """The line naming the dataset folder a preparer reads (and that ``--search-below`` found it)."""
    found = f"  (found below {root} by {SEARCH_BELOW_FLAG})" if folder != root.expanduser().resolve() else ""
    console.print(f"reading {dataset}: {folder}{found}", soft_wrap=True, markup=False)


def _print_next(out: Path) -> None:
    console.print(
        f"next: gdkvm doctor --data {out}   (lists the prepared stores), then gdkvm train",
        soft_wrap=True,
        markup=False,
    )


@prepare_app.command("synthetic")
def synthetic(
    out: Annotated[
        Path, typer.Option("--out", help="Folder for the phantom (CAMUS_public/, EchoNet-Dynamic/).")
    ] = Path("data/raw/synthetic"),
    patients: Annotated[int, typer.Option("--patients", min=1, help="Number of CAMUS patients.")] = 20,
    seed: Annotated[int, typer.Option("--seed", help="Random seed; the same seed gives the same files.")] = 0,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Worker processes.")] = 1,
    difficulty: Annotated[str, typer.Option(
        "--difficulty", metavar="LEVEL",
        help="How real the images look: easy (the gdkvm 0.1 phantom), medium, realistic (calibrated on real "
             "EchoNet-Dynamic statistics) or hard.")] = "realistic",
    foreshortening: Annotated[bool, typer.Option(
        "--foreshortening/--no-foreshortening",
        help="Views whose plane misses the true apex (default). --no-foreshortening cuts every view through "
             "the apex, giving phantom version 2's images and masks byte for byte.")] = True,
) -> None:
    """Write a synthetic phantom in the real CAMUS and EchoNet-Dynamic on-disk formats, with exact truth.

    [bold]Examples[/]

      gdkvm prepare synthetic --out data/raw/synthetic --patients 20 --seed 0
      gdkvm prepare synthetic --out data/raw/easy --patients 8 --difficulty easy

      gdkvm prepare synthetic --out data/raw/v2 --patients 60 --seed 1 --no-foreshortening
    """
    from gdkvm.data.phantom.difficulty import get_difficulty
    from gdkvm.data.synthetic import write_phantom

    get_difficulty(difficulty)  # fail before any work
    with progress_callback("phantom", total=None) as update:
        result = write_phantom(out, patients=patients, seed=seed, workers=workers, progress=update,
                               difficulty=difficulty, foreshortening=foreshortening)
    table = Table(title="synthetic phantom", header_style="bold")
    table.add_column("item")
    table.add_column("path")
    table.add_row("CAMUS", str(result.camus_root))
    table.add_row("EchoNet-Dynamic", str(result.echonet_root))
    table.add_row("truth", str(result.truth_path))
    table.add_row("patients", str(result.patients))
    table.add_row("difficulty", difficulty + ("" if foreshortening else " (no foreshortening)"))
    console.print(table)
    console.print("next:")
    console.print(f"  gdkvm prepare camus --root {result.camus_root}", soft_wrap=True, markup=False)
    console.print(f"  gdkvm prepare echonet --root {result.echonet_root}", soft_wrap=True, markup=False)


@prepare_app.command("camus")
def camus(
    root: RootOpt,
    out: OutOpt = DEFAULT_OUT,
    protocol: Annotated[
        Protocol | None, _protocol_opt("sampling, size, frames, labels and split")
    ] = None,
    size: Annotated[int | None, typer.Option(
        "--size", min=16, help="Output frame size (square). Default: 256.", show_default=False)] = None,
    labels: Annotated[
        LabelSet | None,
        typer.Option("--labels", help="lv: LV endocardium {0,1}; all: {0 bg,1 LV,2 myocardium,3 LA}. "
                     "Default: lv.", show_default=False),
    ] = None,
    sampling: ProtocolSamplingOpt = None,
    split: Annotated[
        CamusSplit | None,
        typer.Option("--split", help="official (database_split/*.txt) or memsam (sequential 70/10/20). "
                     "Default: the protocol's, else official.", show_default=False),
    ] = None,
    frames: ProtocolFramesOpt = None,
    strict: StrictOpt = False,
    search_below: SearchBelowOpt = False,
) -> None:
    """Prepare CAMUS: 10 frames ED -> ES per view, resized, with masks on every frame.

    [bold]Examples[/]

      gdkvm prepare camus --root data/raw/CAMUS_public
      gdkvm prepare camus --root data/raw/CAMUS_public --labels all --split memsam --out data/prepared
      gdkvm prepare camus --root data/raw --search-below --protocol gdkvm
    """
    from gdkvm.data.camus import find_camus_root
    from gdkvm.data.prepare_camus import prepare_camus

    folder = find_camus_root(root, search_below=search_below)
    _print_source("CAMUS", root, folder)
    with progress_callback("camus") as update:
        summary = prepare_camus(
            folder,
            out,
            protocol=protocol,
            size=size,
            labels=labels,
            sampling=sampling,
            split=split,
            frames=frames,
            strict=strict,
            progress=update,
        )
    _print_summary(summary)
    _print_next(out)


@prepare_app.command("echonet")
def echonet(
    root: RootOpt,
    out: OutOpt = DEFAULT_OUT,
    protocol: Annotated[
        Protocol | None,
        _protocol_opt("clip order, sampling, size, frames, grey conversion, tracing rows and mask fill"),
    ] = None,
    size: Annotated[int | None, typer.Option(
        "--size", min=16, help="Output frame size (square). Default: the protocol's, else 128.",
        show_default=False)] = None,
    sampling: ProtocolSamplingOpt = None,
    clip: Annotated[
        ClipForm | None,
        typer.Option(
            "--clip", help="ed-es: cyclic forward ED->ES (re-release); earlier-later: MemSAM order. "
            "Default: the protocol's, else ed-es.", show_default=False,
        ),
    ] = None,
    frames: ProtocolFramesOpt = None,
    gray: Annotated[
        GrayMode | None,
        typer.Option(
            "--gray", help="channel: the first decoded channel (the videos are grey stored as RGB); "
            "luma: OpenCV BGR2GRAY, as the re-release. Default: the protocol's, else channel.",
            show_default=False,
        ),
    ] = None,
    tracing_rows: Annotated[
        TracingRows | None,
        typer.Option(
            "--tracing-rows",
            help="Mask rows of traced frames without exactly 21 rows (repeated tracings of 42/63/84 rows, "
            "odd counts): first = the first 21 rows (one tracing); all = every row after the first, "
            "the same rows as echonet/dynamic and the GDKVM re-release (their masks of twice-traced "
            "frames come out largely hollow); exact = skip the video unless both traced frames have "
            "exactly 21 rows (MemSAM; skipped videos are listed, not bad cases). Default: the protocol's, "
            "else first.",
            show_default=False,
        ),
    ] = None,
    mask_fill: Annotated[
        MaskFill | None,
        typer.Option(
            "--mask-fill", help="skimage: polygon pixels strictly inside the tracing (echonet/dynamic, MemSAM); "
            "cv2: cv2.fillPoly, outline pixels included (the GDKVM re-release). Default: the protocol's, "
            "else skimage.", show_default=False,
        ),
    ] = None,
    strict: StrictOpt = False,
    search_below: SearchBelowOpt = False,
) -> None:
    """Prepare EchoNet-Dynamic: 10 frames from the traced ED to ES, masks at the first and last frame.

    [bold]Examples[/]

      gdkvm prepare echonet --root data/raw/EchoNet-Dynamic
      gdkvm prepare echonet --root data/raw/EchoNet-Dynamic --size 256 --clip earlier-later --tracing-rows exact
      gdkvm prepare echonet --root data/raw/EchoNet-Dynamic --protocol gdkvm
      gdkvm prepare echonet --root data/raw --search-below --protocol memsam --size 128
    """
    from gdkvm.data.echonet import find_echonet_root
    from gdkvm.data.prepare_echonet import prepare_echonet

    folder = find_echonet_root(root, search_below=search_below)
    _print_source("EchoNet-Dynamic", root, folder)
    with progress_callback("echonet") as update:
        summary = prepare_echonet(
            folder,
            out,
            protocol=protocol,
            size=size,
            sampling=sampling,
            clip=clip,
            frames=frames,
            gray=gray,
            tracing_rows=tracing_rows,
            mask_fill=mask_fill,
            strict=strict,
            progress=update,
        )
    _print_summary(summary)
    _print_next(out)


@prepare_app.command("folder")
def folder(
    root: Annotated[
        Path,
        typer.Option("--root", help="The folder holding videos/, masks/ and optionally splits.csv, meta.csv.",
                     show_default=False),
    ],
    out: OutOpt = DEFAULT_OUT,
    size: Annotated[int, typer.Option("--size", min=16, help="Output frame size (square).")] = 128,
    frames: Annotated[
        int,
        typer.Option("--frames", min=2, help="Frames per clip, from the first to the last labelled frame."),
    ] = 10,
    sampling: SamplingOpt = "floor",
    seed: Annotated[
        int, typer.Option("--seed", help="Seed of the 80/10/10 split by case when there is no splits.csv.")
    ] = 0,
    name: Annotated[
        str, typer.Option("--name", help="Dataset folder under OUT (OUT/NAME/); also the manifest source.")
    ] = "folder",
    strict: StrictOpt = False,
) -> None:
    """Prepare a folder of your own recordings and LV masks.

    Layout: [bold]videos/<case>.{avi,mp4,nii.gz,nii}[/]; masks as [bold]masks/<case>/<frame>.png[/]
    (0 = background, 1 = LV, any frames, 0-based frame numbers) or [bold]masks/<case>.nii.gz[/] (a label
    map per frame, all-background frames unlabelled); optional [bold]splits.csv[/] (case,split with
    train/val/test; without it a seeded 80/10/10 split by case) and [bold]meta.csv[/]
    (case,fps,spacing_row_mm,spacing_col_mm,view,ef). Each clip runs from the first to the last
    labelled frame; labelled clip frames carry their masks. Bad cases are skipped and listed (fatal with
    --strict). The store format is described in docs/store.md.

    [bold]Examples[/]

      gdkvm prepare folder --root /datasets/my-echo
      gdkvm prepare folder --root /datasets/my-echo --size 256 --frames 16 --seed 1 --strict
    """
    from gdkvm.data.prepare_folder import prepare_folder

    if root.is_dir():
        _print_source("folder", root, root.expanduser().resolve())
    with progress_callback("folder") as update:
        summary = prepare_folder(
            root,
            out,
            size=size,
            frames=frames,
            sampling=sampling,
            seed=seed,
            name=name,
            strict=strict,
            progress=update,
        )
    _print_summary(summary)
    _print_next(summary.out_dir.parent)
