"""`gptclassify generate`: continue a prompt (a check that weights loaded correctly)."""

from __future__ import annotations

import click

from gptclassify.cli.app import cli
from gptclassify.cli.options import DEVICE
from gptclassify.errors import GPTClassifyError
from gptclassify.models import PRESETS
from gptclassify.packaged import DEFAULT_MODEL

MODEL_HELP = (
    f"{DEFAULT_MODEL} (SmolLM2-135M-Instruct from the Python package index, cached), a preset ({', '.join(PRESETS)}; downloaded from the Hugging Face Hub), a Hub id "
    "(owner/name), a local Hugging Face folder (GPT-2, Llama 3.x, SmolLM2, Mistral, Qwen2/2.5, "
    "Qwen3) or a GGUF file."
)


@cli.command()
@click.option("--model", "model_name", default=DEFAULT_MODEL, show_default=True, help=MODEL_HELP)
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
@click.option(
    "--chat",
    is_flag=True,
    help="Send the prompt as a user message through the model's chat template; print the answer.",
)
@DEVICE
def generate(
    model_name: str,
    prompt: str,
    max_new_tokens: int,
    temperature: float,
    top_k: int | None,
    seed: int,
    chat: bool,
    device: str,
) -> None:
    """Continue a prompt with a pretrained model (a check that weights loaded correctly)."""
    from gptclassify.generation import check_temperature, generate_text
    from gptclassify.runtime import resolve_device
    from gptclassify.weights import load_pretrained_model

    if not prompt:
        raise GPTClassifyError("--prompt: the prompt is empty")
    check_temperature(temperature)  # before a model is loaded
    pretrained = load_pretrained_model(model_name)
    model = pretrained.model.to(resolve_device(device))
    text = generate_text(
        model,
        prompt,
        max_new_tokens,
        temperature,
        top_k,
        seed,
        tokenizer=pretrained.tokenizer,
        chat=chat,
    )
    click.echo(text)
