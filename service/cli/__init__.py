"""The `latentdex` command line: thin typed commands over the library functions the tests call."""

from __future__ import annotations

import sys

import typer

from models.errors import LatentdexError
from service.cli import demo_command, model_commands, train_command
from service.cli.exit_codes import exit_code_for

app = typer.Typer(
    name="latentdex",
    help="Latent image retrieval: encode a photo library with a VAE, search it, decode the results.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("train")(train_command.train)
app.command("reconstruct")(model_commands.reconstruct)
app.command("model-info")(model_commands.model_info)
app.command("demo")(demo_command.demo)


def main() -> None:
    """Console-script entry point: runs the app, turning domain errors into one-line messages."""
    try:
        app(standalone_mode=False)
    except LatentdexError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        sys.exit(exit_code_for(exc))
    except (typer.Abort, KeyboardInterrupt):
        typer.secho("interrupted", err=True)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
