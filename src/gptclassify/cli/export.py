"""`gptclassify export`: a trained model folder in Hugging Face format or as an ONNX graph."""

from __future__ import annotations

from pathlib import Path

import click

from gptclassify.cli.app import cli


@cli.command()
@click.argument("run_dir", metavar="RUN")
@click.option(
    "--format",
    "fmt",
    required=True,
    type=click.Choice(["hf", "onnx"]),
    help="hf: a Hugging Face XForSequenceClassification folder (GPT2, Llama, Mistral, Qwen2, Qwen3, Gemma 3) for transformers; onnx: a gptclassify "
    "folder holding an ONNX graph, run by ONNX Runtime without torch.",
)
@click.option(
    "--quantize",
    default="none",
    show_default=True,
    type=click.Choice(["none", "int8"]),
    help="onnx only: int8 linear layers (ONNX Runtime dynamic quantization).",
)
@click.option("--out", required=True, metavar="DIR", help="The folder to write.")
@click.option(
    "--data",
    default=None,
    metavar="FILE_OR_DIR",
    help="Labelled texts to check the export on. Default: the test split saved in RUN.",
)
@click.option(
    "--exporter",
    default="auto",
    show_default=True,
    type=click.Choice(["auto", "dynamo", "legacy"]),
    help="onnx only: torch.onnx's exporter; auto tries dynamo, then legacy.",
)
@click.option("--opset", default=None, type=click.IntRange(min=7), help="onnx only: ONNX opset.")
def export(run_dir, fmt, quantize, out, data, exporter, opset) -> None:
    """Export a trained classifier: Hugging Face format, or ONNX (optionally int8)."""
    from gptclassify.export import export as run_export

    report = run_export(
        run_dir, fmt, out, quantize=quantize, data=data, exporter=exporter, opset=opset
    )
    for note in report.notes:
        click.echo(f"- {note}")
    checks = report.checks
    if "fp32_max_abs_dlogit" in checks:
        click.echo(
            f"- ONNX Runtime vs PyTorch (fp32) on padded batches of {checks['checked_on']}: "
            f"max |dlogit| {checks['fp32_max_abs_dlogit']:.1e}"
        )
    if "int8" in checks:
        q = checks["int8"]
        line = f"- int8 vs fp32 on {q['texts']} texts: labels agree {q['label_agreement']:.2%}"
        if "accuracy_fp32" in q:
            change = (q["accuracy_int8"] - q["accuracy_fp32"]) * 100
            line += (
                f", accuracy {q['accuracy_fp32']:.2%} -> {q['accuracy_int8']:.2%} "
                f"({change:+.2f} points)"
            )
        click.echo(line)
    for warning in report.warnings:
        click.echo(f"Warning: {warning}", err=True)
    what = "ONNX"
    if fmt == "hf":  # the class written (GPT2ForSequenceClassification, LlamaFor..., ...)
        import json

        written = json.loads((Path(report.out) / "config.json").read_text(encoding="utf-8"))
        what = f"a Hugging Face {written['architectures'][0]} folder"
    precision = f" ({report.precision})" if fmt == "onnx" else ""
    click.echo(f"Wrote {what}{precision} to {report.out}")
