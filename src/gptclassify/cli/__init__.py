"""Command line: a table of subcommands, each a thin call into the Python API.

app.py holds the group; every other module here is one command or command group. Commands
import what they run when they run, so `gptclassify --help` stays instant.
"""

from gptclassify.cli import (  # noqa: F401
    baseline,
    data,
    experiments,
    export,
    generate,
    predict,
    serve,
    train,
    tune,
)
from gptclassify.cli.app import cli, main

__all__ = ["cli", "main"]
