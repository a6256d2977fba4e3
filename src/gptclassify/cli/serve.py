"""`gptclassify serve` (the HTTP API and web page) and `gptclassify explain` (why a label)."""

from __future__ import annotations

import dataclasses
import errno
from typing import Any

import click

from gptclassify.args import LoadOptions
from gptclassify.cli.app import cli
from gptclassify.cli.options import BASE_MODEL, DEVICE, build, config_options, load_options
from gptclassify.errors import GPTClassifyError
from gptclassify.serve.settings import ServeSettings

SERVE_EXTRA = (
    'gptclassify serve needs the serve extra: pip install "gptclassify[serve]" (in a clone of '
    'the repository: pip install ".[serve]")'
)


@cli.command()
@click.argument("run_dir", metavar="RUN")
@config_options(ServeSettings, exclude=("max_explain_waiting",))
@load_options
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
    help="How much the server logs (uvicorn's log level).",
)
@click.option(
    "--access-log/--no-access-log",
    default=True,
    show_default=True,
    help="One log line per request.",
)
def serve(
    run_dir: str,
    log_level: str,
    access_log: bool,
    **values: Any,
) -> None:
    """Serve a trained classifier over HTTP: TEI's /predict (and POST /), vLLM's /classify,
    /explain, /info, /metrics, the OpenAPI schema at /openapi.json, and a web page at /."""
    load = build(LoadOptions, values)
    settings: ServeSettings = build(ServeSettings, values)
    _run_server(run_dir, settings, load, log_level, access_log)


SAGEMAKER_MODEL_DIR = "/opt/ml/model"
"""Where SageMaker unpacks the model's model.tar.gz (SM_MODEL_DIR says so too)."""
SAGEMAKER_PORT = 8080


@cli.group()
def sagemaker() -> None:
    """Amazon SageMaker's container contract (an image's ENTRYPOINT: gptclassify sagemaker)."""


@sagemaker.command("serve")
@config_options(ServeSettings, exclude=("max_explain_waiting", "host", "port"))
@load_options
@click.option(
    "--model-dir",
    default=None,
    help=f"The model folder (default: $SM_MODEL_DIR, else {SAGEMAKER_MODEL_DIR}).",
)
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
    help="How much the server logs (uvicorn's log level).",
)
@click.option(
    "--access-log/--no-access-log",
    default=True,
    show_default=True,
    help="One log line per request.",
)
def sagemaker_serve(
    model_dir: str | None,
    log_level: str,
    access_log: bool,
    **values: Any,
) -> None:
    """`gptclassify serve` as SageMaker runs a container (`docker run IMAGE serve`): the
    model folder from /opt/ml/model, on 0.0.0.0:8080 (or $SAGEMAKER_BIND_TO_PORT), with
    /ping, /invocations (JSON or CSV, bodies up to 6 MB) and every other route."""
    import os

    run_dir = model_dir or os.environ.get("SM_MODEL_DIR") or SAGEMAKER_MODEL_DIR
    port = os.environ.get("SAGEMAKER_BIND_TO_PORT") or str(SAGEMAKER_PORT)
    if not port.isdigit():
        raise GPTClassifyError(f"SAGEMAKER_BIND_TO_PORT={port!r} is not a TCP port")
    load = build(LoadOptions, values)
    settings: ServeSettings = build(ServeSettings, values)
    settings = dataclasses.replace(settings, host="0.0.0.0", port=int(port))
    # SageMaker's endpoint is reached through AWS' own authenticated InvokeEndpoint: no key
    # needed in the container (--api-key still adds one).
    _run_server(run_dir, settings, load, log_level, access_log, warn_open=False)


def _run_server(
    run_dir: str,
    settings: ServeSettings,
    load: LoadOptions,
    log_level: str,
    access_log: bool,
    warn_open: bool = True,
) -> None:
    try:
        import uvicorn

        from gptclassify.serve import create_app
    except ModuleNotFoundError as exc:
        raise GPTClassifyError(f"{SERVE_EXTRA} ({exc})") from None
    from gptclassify.predict import Classifier

    host, port = settings.host, settings.port
    check_port(host, port)  # before the model loads and before "Serving on"
    # The model loads on the thread that will run its passes (one thread pool for all the
    # model's work); starting here makes a bad model folder a one-line error.
    app = create_app(lambda: Classifier.load(run_dir, load), settings)
    service = app.state.service
    service.start()
    classifier = service.classifier
    if warn_open and not settings.loopback and not settings.api_key:
        click.echo(
            f"Warning: listening on {host} without --api-key: anyone who can reach this "
            "machine can use the model",
            err=True,
        )
    shown = f"[{host}]" if ":" in host else host
    click.echo(
        f"Serving {run_dir} ({', '.join(classifier.labels)}; {classifier.runtime.describe()}) "
        f"on http://{shown}:{port}/ (API schema: /openapi.json)",
        err=True,
    )
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=access_log)


def check_port(host: str, port: int) -> None:
    """One line when `host:port` cannot be listened on (another server holds it, or the
    address is not this machine's), instead of uvicorn's errno after "Serving on". The port
    is bound as uvicorn binds it (SO_REUSEADDR: a port in TIME_WAIT is free), then let go."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        raise GPTClassifyError(f"--host {host}: cannot resolve it ({exc})") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            shown = f"[{host}]" if ":" in host else host
            busy = exc.errno == errno.EADDRINUSE
            raise GPTClassifyError(
                f"--port {port}: cannot listen on {shown}:{port} ("
                + (
                    "another program is already listening there"
                    if busy
                    else exc.strerror or str(exc)
                )
                + "); choose another --port"
                + (" or stop that program" if busy else "")
            ) from None


@cli.command()
@click.argument("run_dir", metavar="RUN")
@click.argument("text")
@click.option(
    "--method",
    default="integrated-gradients",
    show_default=True,
    type=click.Choice(["integrated-gradients", "gradient-x-input"]),
    help="How tokens are credited.",
)
@click.option(
    "--steps",
    default=32,
    show_default=True,
    type=click.IntRange(1, 512),
    help="Integration steps (integrated gradients).",
)
@click.option("--target", default=None, help="The class to explain (default: the predicted one).")
@click.option("--json", "as_json", is_flag=True, help="Print the explanation as JSON.")
@DEVICE
@BASE_MODEL
def explain(
    run_dir: str,
    text: str,
    method: str,
    steps: int,
    target: str | None,
    as_json: bool,
    device: str,
    base_model: str | None,
) -> None:
    """Why TEXT gets its label: where along the text the class took hold, and each token's
    attribution, shaded in the terminal."""
    import json

    from gptclassify.predict import Classifier

    classifier = Classifier.load(run_dir, device=device, precision="fp32", base_model=base_model)
    explanation = classifier.explain(text, method=method, steps=steps, target=target)
    if as_json:
        click.echo(json.dumps(explanation.to_json(), indent=2, ensure_ascii=False))
        return
    _print_explanation(explanation)


def _print_explanation(e) -> None:
    from rich.console import Console
    from rich.text import Text

    console = Console(highlight=False)
    t = e.labels.index(e.target)
    probs = ", ".join(f"{name} {p:.3f}" for name, p in zip(e.labels, e.probs, strict=True))
    console.print(Text.assemble(("Label: ", "bold"), (e.label, "bold"), f"  ({probs})"))
    if e.truncated_tokens:
        console.print(f"(the model read the text without its last {e.truncated_tokens} tokens)")
    if e.tokens[0].probs is not None:
        console.print(f"\nWhere it became {e.target}: p({e.target}) of the text up to each token")
        line = Text()
        for token in e.tokens:
            p = token.probs[t]
            line.append(token.text, style=f"black on {_shade(2 * p - 1)}")  # white at 0.5
        console.print(line)
    what = "integrated gradients" if e.method == "integrated-gradients" else "gradient x input"
    steps = f", {e.steps} steps" if e.steps else ""
    console.print(
        f"\nAttribution ({what}{steps}) to log p({e.target}): red toward it, blue against"
    )
    peak = max((abs(x.attribution) for x in e.tokens), default=0.0) or 1.0
    line = Text()
    for token in e.tokens:
        line.append(token.text, style=f"black on {_shade(token.attribution / peak)}")
    console.print(line)

    def shown(tokens) -> str:
        return ", ".join(f"{x.text.strip() or repr(x.text)} {x.attribution:+.3f}" for x in tokens)

    # Only positive scores push toward the label; negative ones are listed as against it.
    toward = sorted((x for x in e.tokens if x.attribution > 0), key=lambda x: -x.attribution)
    against = sorted((x for x in e.tokens if x.attribution < 0), key=lambda x: x.attribution)
    console.print("Strongest toward it: " + (shown(toward[:5]) or "none"))
    if against:
        console.print("Strongest against it: " + shown(against[:5]))
    if e.completeness_gap is not None:
        console.print(
            f"(attributions sum to {sum(x.attribution for x in e.tokens):+.3f}; log p({e.target}) "
            f"went from {e.baseline_score:.3f} at the baseline to {e.score:.3f})"
        )


def _shade(value: float) -> str:
    """A background colour: white at 0, red toward +1, blue toward -1."""
    v = max(-1.0, min(1.0, value))
    fade = int(255 * (1 - 0.7 * abs(v)))  # never too dark to read the token on it
    return f"rgb(255,{fade},{fade})" if v >= 0 else f"rgb({fade},{fade},255)"
