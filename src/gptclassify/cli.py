"""Command line: a table of subcommands, each a thin call into the Python API.

Heavy imports (torch, pandas) happen inside the commands so `--help` stays instant.
"""

from __future__ import annotations

import sys

import click

from gptclassify import __version__
from gptclassify.config import PRESETS
from gptclassify.errors import GPTClassifyError

MODEL_HELP = f"A preset ({', '.join(PRESETS)}; downloaded from the Hugging Face Hub) or a local folder in Hugging Face GPT-2 format."


class _Group(click.Group):
    """Turns GPTClassifyError into click's one-line `Error: ...` and exit status 1."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except GPTClassifyError as exc:
            raise click.ClickException(str(exc)) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gptclassify")
def cli() -> None:
    """Fine-tune GPT-2 into a text classifier (spam / not spam by default)."""


@cli.command()
@click.option("--model", "model_name", default="gpt2", show_default=True, help=MODEL_HELP)
@click.option("--prompt", required=True, help="Text to continue.")
@click.option("--max-new-tokens", default=50, show_default=True, type=click.IntRange(min=0))
@click.option(
    "--temperature",
    default=0.0,
    show_default=True,
    type=click.FloatRange(min=0.0),
    help="0 is greedy and deterministic; higher samples more freely.",
)
@click.option(
    "--top-k",
    default=None,
    type=click.IntRange(min=1),
    help="Sample only among the K likeliest tokens.",
)
@click.option("--seed", default=123, show_default=True, type=int, help="Seed for sampling.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
def generate(
    model_name: str,
    prompt: str,
    max_new_tokens: int,
    temperature: float,
    top_k: int | None,
    seed: int,
    device: str,
) -> None:
    """Continue a prompt with a GPT-2 model (a check that weights loaded correctly)."""
    from gptclassify.generation import generate_text
    from gptclassify.runtime import resolve_device
    from gptclassify.weights import load_pretrained

    if not prompt:
        raise GPTClassifyError("--prompt: the prompt is empty")
    model = load_pretrained(model_name).to(resolve_device(device))
    text = generate_text(model, prompt, max_new_tokens, temperature, top_k, seed)
    click.echo(text)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=argv if argv is not None else sys.argv[1:], prog_name="gptclassify")
