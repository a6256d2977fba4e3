"""Serve a trained classifier over HTTP: `create_app(classifier, settings)` is the FastAPI app
(TEI's /predict, vLLM's /classify, /explain, /info, /metrics and a web page at /) that
`gptclassify serve` runs under uvicorn. Needs the `serve` extra (FastAPI, uvicorn,
prometheus-client); `ServeSettings` does not, so the command line can read its defaults
without it (`create_app` is imported when first asked for)."""

from typing import TYPE_CHECKING, Any

from gptclassify.serve.settings import ServeSettings

if TYPE_CHECKING:
    from gptclassify.serve.app import create_app

__all__ = ["ServeSettings", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from gptclassify.serve.app import create_app  # lazy: the serve extra (FastAPI)

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
