"""Fine-tuning: `train(cfg)` builds the classifier, runs the loop and writes the run folder.

- state.py: `TrainState`, everything a checkpoint saves;
- loop.py: `fit(state, engine, sources, train, eval, callbacks)`, no file I/O;
- prefix_cache.py: the frozen-prefix cache;
- build.py: backbone, classifier, class weights;
- run.py: `train()`: build -> fit -> calibrate -> write (the only place that writes files).
"""

from gptclassify.training.build import build_backbone, build_classifier, class_weight_tensor
from gptclassify.training.loop import Callbacks, Engine, Sources, TrainingDiverged, fit
from gptclassify.training.run import train
from gptclassify.training.state import TrainState

__all__ = [
    "Callbacks",
    "Engine",
    "Sources",
    "TrainState",
    "TrainingDiverged",
    "build_backbone",
    "build_classifier",
    "class_weight_tensor",
    "fit",
    "train",
]
