"""Root Typer app: global options, command registration, and the error boundary."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Annotated

import typer
from typer.core import TyperGroup

from gdkvm import __version__
from gdkvm.cli.common import ARGV_META, DEBUG_ENV, debug_enabled, err_console


class _RootGroup(TyperGroup):
    """The root command group; it keeps the command line it was given in ``ctx.meta[ARGV_META]``."""

    def make_context(self, info_name, args, parent=None, **extra):  # type: ignore[no-untyped-def]
        given = list(args)
        ctx = super().make_context(info_name, list(args), parent=parent, **extra)
        ctx.meta[ARGV_META] = given
        return ctx


app = typer.Typer(
    name="gdkvm",
    help="Reproduce and benchmark GDKVM (ICCV 2025) echocardiography video segmentation.\n\n"
    "Typical flow: [bold]gdkvm prepare synthetic[/] -> [bold]gdkvm prepare camus[/] -> "
    "[bold]gdkvm train --variant full[/] -> [bold]gdkvm evaluate[/] -> [bold]gdkvm report[/].",
    rich_markup_mode="rich",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
    add_completion=False,
    cls=_RootGroup,
)

def _hide_flag_metavar() -> None:
    """Typer's rich help shows ``<bool>`` beside every on/off flag (``--resume <bool>``), which reads as if
    the flag took a value; show nothing there for flags, as click does."""
    from typer.core import TyperOption

    original = getattr(TyperOption, "display_type_rich", None)
    if original is None or getattr(original, "_gdkvm_flag_patch", False):
        return

    def display_type_rich(self: TyperOption, ctx: object) -> str | None:
        if getattr(self, "is_flag", False) and self.metavar is None:
            return None
        return original(self, ctx)

    display_type_rich._gdkvm_flag_patch = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_hide_flag_metavar()

# (module, attribute, name): sub-apps mounted with add_typer, single commands with command().
_SUBAPPS = [("gdkvm.cli.prepare", "prepare_app", "prepare"), ("gdkvm.cli.bench", "bench_app", "bench")]
_COMMANDS = [
    ("gdkvm.cli.doctor", "doctor", "doctor"),
    ("gdkvm.cli.variants", "variants", "variants"),
    ("gdkvm.cli.train", "train", "train"),
    ("gdkvm.cli.evaluate", "evaluate", "evaluate"),
    ("gdkvm.cli.ablate", "ablate", "ablate"),
    ("gdkvm.cli.report", "report", "report"),
    ("gdkvm.cli.predict", "predict", "predict"),
    ("gdkvm.cli.export", "export", "export"),
]


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"gdkvm {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version_callback, is_eager=True, help="Print the version.")
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
) -> None:
    """gdkvm command line."""
    if debug:
        os.environ[DEBUG_ENV] = "1"


def _register() -> None:
    """Mount every command module that exists; a module still to be written is simply absent."""
    for module, attr, name in _SUBAPPS:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name == module:
                continue
            raise
        app.add_typer(getattr(mod, attr), name=name)
    for module, attr, name in _COMMANDS:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name == module:
                continue
            raise
        app.command(name=name)(getattr(mod, attr))


_register()


def hoist_debug_flag(argv: list[str]) -> list[str]:
    """Move ``--debug`` given after the command (``gdkvm bench fps ... --debug``) to the root, where the
    option lives, so it works wherever the user types it. Arguments after ``--`` are left alone."""
    end = argv.index("--") if "--" in argv else len(argv)
    head, tail = argv[1:end], argv[end:]
    if "--debug" not in head:
        return argv
    return [argv[0], "--debug", *(a for a in head if a != "--debug"), *tail]


def run() -> None:
    """Console-script entry point: run the app, turning GdkvmError into one red line and exit 1.

    Typer's standalone mode already maps usage errors to exit code 2 and Ctrl-C to 130; anything else
    that escapes is a bug or an unexpected input, shown as one line unless ``--debug`` is on.
    """
    from gdkvm.errors import GdkvmError

    sys.argv = hoist_debug_flag(sys.argv)
    try:
        app()
    except GdkvmError as e:
        if debug_enabled():
            raise
        err_console.print(f"[bold red]error:[/] {e}", soft_wrap=True)
        err_console.print(f"[dim](run with --debug or {DEBUG_ENV}=1 for the traceback)[/]")
        sys.exit(1)
    except Exception as e:
        if debug_enabled():
            raise
        err_console.print(f"[bold red]error:[/] {type(e).__name__}: {e}", soft_wrap=True)
        err_console.print(f"[dim](run with --debug or {DEBUG_ENV}=1 for the traceback)[/]")
        sys.exit(1)


if __name__ == "__main__":
    run()
