"""Export a trained classifier folder for other runtimes: `export(run_dir, format, out)`.

- format "hf": a Hugging Face `GPT2ForSequenceClassification` folder (export/hf.py).
- format "onnx": a gptclassify folder holding an ONNX graph instead of PyTorch weights, with
  the same config.json (labels, input policy, temperature), so `Classifier.load` and
  `gptclassify predict` run it with ONNX Runtime and without torch (export/onnx.py);
  `quantize="int8"` stores the linear layers in int8 (export/quantize.py).

An export is written into a temporary folder beside `out` and renamed into place when it is
complete and checked, so `out` holds the previous complete export or the new one, never a
mix. It replaces only an export of the same format; any other folder is left alone.
"""

from gptclassify.export.run import FORMATS, ExportReport, export, folder_kind

__all__ = ["FORMATS", "ExportReport", "export", "folder_kind"]
