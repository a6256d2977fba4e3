"""Serve a trained classifier over HTTP: `create_app(classifier, settings)` is the FastAPI app
(TEI's /predict, vLLM's /classify, /explain, /info, /metrics and a web page at /) that
`gptclassify serve` runs under uvicorn. Needs the `serve` extra (FastAPI, uvicorn,
prometheus-client)."""

from gptclassify.serve.app import create_app
from gptclassify.serve.settings import ServeSettings

__all__ = ["ServeSettings", "create_app"]
