"""The `latentdex` command line: thin typed commands over the library functions the tests call.

Every command module imports torch, FAISS, the catalog and the server inside the commands that use them,
so the CLI starts without them: `--help`, a query to a server or `health` need none; and the client
(with gRPC) inside the commands that talk to a server, so `index`, `stats` or `train` load no gRPC
(`tests/test_cli.py` holds both).
"""

from __future__ import annotations

import sys

import typer

from latentdex.errors import LatentdexError
from latentdex.service.cli import (
    demo_command,
    duplicates_command,
    latent_commands,
    model_commands,
    serve_commands,
    store_commands,
    train_command,
)
from latentdex.service.cli.exit_codes import exit_code_for

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
app.command("index")(store_commands.index)
app.command("stats")(store_commands.stats)
app.command("verify")(store_commands.verify)
app.command("rebuild")(store_commands.rebuild)
app.command("export")(store_commands.export)
app.command("import")(store_commands.import_)
app.command("duplicates")(duplicates_command.duplicates)
app.command("serve")(serve_commands.serve)
app.command("query")(serve_commands.query)
app.command("health")(serve_commands.health)
app.command("generate")(latent_commands.generate)
app.command("interpolate")(latent_commands.interpolate)
app.command("edit")(latent_commands.edit)
app.add_typer(latent_commands.direction_app, name="direction")
app.command("traverse")(latent_commands.traverse)
app.command("map")(latent_commands.latent_map)
app.command("latent-stats")(latent_commands.latent_stats)


def main() -> None:
    """Console-script entry point: runs the app, turning domain errors into one-line messages."""
    try:
        code = app(standalone_mode=False)
        if isinstance(code, int) and code:  # not raised: typer returns a command's typer.Exit code (and 130)
            sys.exit(code)
    except LatentdexError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        sys.exit(exit_code_for(exc))
    except (typer.Abort, KeyboardInterrupt):
        typer.secho("interrupted", err=True)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.TyperException as exc:  # usage errors: typer's bundled click exceptions derive from it
        show = getattr(exc, "show", None)
        if show is None:
            raise
        show()
        sys.exit(getattr(exc, "exit_code", 2))
