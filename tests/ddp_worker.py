"""One training step of a tiny classifier, for tests/test_distributed.py.

Run alone (one process) or under `torchrun --nproc_per_node 2`: it builds the same model and
data on every rank, takes one optimizer step over two micro-batches of the same global
batch, and saves the trainable parameters of its rank to OUT/rank<r>.safetensors.

    python tests/ddp_worker.py OUT TRAINABLE
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from gptclassify.args import TrainArgs
from gptclassify.classifier import GPTClassifier
from gptclassify.config import GPTConfig
from gptclassify.data.batches import TokenSource
from gptclassify.data.encode import InputPolicy, encode
from gptclassify.model import GPTModel
from gptclassify.training.build import new_state, training_net
from gptclassify.training.distributed import Dist
from gptclassify.training.loop import Engine, _step
from gptclassify.training.prefix_cache import build_prefix_source

CFG = GPTConfig(context_length=32, emb_dim=32, n_heads=4, n_layers=2)
TEXTS = [f"message number {i} " + "win cash " * (i % 5) + "see you" * (i % 3) for i in range(16)]


def main() -> None:
    out, trainable = Path(sys.argv[1]), sys.argv[2]
    torch.set_num_threads(1)
    dist, device = Dist.from_env("cpu")
    torch.manual_seed(0)
    model = GPTClassifier(GPTModel(CFG), 2)
    if trainable == "lora":
        model.add_lora(4, 8)
    start = model.set_trainable(trainable)
    policy = InputPolicy(CFG.context_length, None)
    source = TokenSource(encode(TEXTS, policy, [i % 2 for i in range(16)]), device)
    if start > 0:
        source = build_prefix_source(model, source, start, dist=dist)
    engine = Engine(
        dist.wrap(training_net(model, torch.float32, start), device),
        device,
        torch.float32,
        num_classes=2,
        dist=dist,
    )
    initial = {
        f"initial.{n}": p.detach().clone() for n, p in model.named_parameters() if p.requires_grad
    }
    # A small lr: Adam's first update is lr * g / (|g| + eps), which turns float noise in a
    # near-zero gradient (|g| ~ 1e-7) into an update difference of up to ~lr / 200; at
    # 1e-4 that stays below the test's 1e-6.
    state = new_state(model, TrainArgs(lr=1e-4), device)
    engine.net.train()
    # One step over two micro-batches of 8 (gradient accumulation: no_sync on the first).
    group = [torch.arange(0, 8), torch.arange(8, 16)]
    loss = _step(state, engine, source, group)
    params = {n: p.detach().contiguous() for n, p in model.named_parameters() if p.requires_grad}
    params["loss"] = torch.tensor([loss])
    params.update(initial)
    out.mkdir(parents=True, exist_ok=True)
    save_file(params, out / f"rank{dist.rank}.safetensors")
    del engine
    dist.close()


if __name__ == "__main__":
    main()
