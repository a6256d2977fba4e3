"""The arithmetic the speed benchmarks report with (benchmarks/ is not a package; its pure
functions are imported from the folder). No model runs here."""

from __future__ import annotations

import sys

import pytest
from torch.utils.data import DataLoader

from conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
import common  # noqa: E402
import predict_speed  # noqa: E402
import train_speed  # noqa: E402


def _book_loaders(train: int, val: int, test: int):
    """The book's three loaders (batch 8; train shuffled with drop_last) over dummy rows."""
    return (
        DataLoader(list(range(train)), batch_size=8, shuffle=True, drop_last=True),
        DataLoader(list(range(val)), batch_size=8, shuffle=False, drop_last=False),
        DataLoader(list(range(test)), batch_size=8, shuffle=False, drop_last=False),
    )


def _rows_the_book_runs(loaders, epochs: int) -> dict[str, int]:
    """Walk the book's schedule (train_classifier_simple + the final accuracies) and count the
    rows each no-grad pass reads, by iterating the loaders as the book's helpers do."""
    train, val, test = loaders

    def first(loader, n=None):
        n = len(loader) if n is None else min(n, len(loader))
        return sum(len(b) for i, b in zip(range(n), loader, strict=False))

    loop, step = 0, -1
    for _ in range(epochs):
        for _batch in train:
            step += 1
            if step % 50 == 0:  # evaluate_model(eval_iter=5)
                loop += first(train, 5) + first(val, 5)
        loop += first(train, 5) + first(val, 5)  # the epoch's accuracy estimates
    return {"loop": loop, "final": first(train) + first(val) + first(test)}


@pytest.mark.parametrize(("sizes", "epochs"), [((1045, 149, 300), 5), ((16, 149, 300), 1)])
def test_eval_rows_match_the_books_schedule(sizes, epochs):
    loaders = _book_loaders(*sizes)
    assert train_speed._eval_rows(*loaders, epochs) == _rows_the_book_runs(loaders, epochs)


def test_eval_rows_of_the_default_split():
    # 130 steps per epoch: evaluations at steps 0, 50, ..., 600 (13), 5 + 5 batches each and
    # per epoch; final passes over 130 x 8 training rows, 149 and 300.
    rows = train_speed._eval_rows(*_book_loaders(1045, 149, 300), epochs=5)
    assert rows == {"loop": (13 + 5) * 80, "final": 1040 + 149 + 300}


def test_price_reference_extrapolates_the_steady_steps():
    priced = train_speed.price_reference(
        step_times=[5.0, 1.0, 1.0, 2.0],  # the first step pays the kernel set-up
        forward_times=[(8, 0.4), (8, 0.4)],  # 0.05 s per row
        steps=10,
        epochs=1,
        eval_rows={"loop": 36, "final": 100},
    )
    # measured 9 s + 6 more steps at the mean of steps 2-4 (4/3 s) + measured 0.8 s of
    # no-grad passes + the 20 unmeasured loop rows at 0.05 s.
    assert priced["training_time_s"] == pytest.approx(9 + 6 * 4 / 3 + 0.8 + 20 * 0.05)
    assert priced["final_s"] == pytest.approx(5.0)
    assert priced["measured_steps"] == 4
    with pytest.raises(SystemExit):
        train_speed.price_reference([1.0], [(8, 0.4)], 10, 1, {"loop": 0, "final": 0})


def test_flop_shapes_are_the_models():
    # GPT-2: four matrices of 12 C^2 weights per block. The benchmark Llama: its own config.
    c = 768
    assert predict_speed.SHAPES["gpt2"].token_weights() == 12 * c * c
    cfg = common.LLAMA_SMALL
    head_dim = cfg["hidden_size"] // cfg["num_attention_heads"]
    kv = 2 * cfg["num_key_value_heads"] * head_dim
    llama = predict_speed.SHAPES["llama"]
    assert llama.kv == kv
    assert llama.mlp == 3 * cfg["hidden_size"] * cfg["intermediate_size"]
    # The size the issue asks for: SwiGLU's three matrices hold GPT-2's MLP weights.
    assert llama.mlp == predict_speed.SHAPES["gpt2"].mlp
    # executed FLOPs of one unpadded text equal the useful ones; padding adds work.
    for shape in predict_speed.SHAPES.values():
        useful = predict_speed.useful_flops([10], shape)
        assert predict_speed.executed_flops([[10]], shape, pooled_last=False) == useful
        assert predict_speed.executed_flops([[10, 4]], shape, False) > useful + (
            predict_speed.useful_flops([4], shape)
        )
        # Packed runs the matmuls on the real tokens only.
        packed = predict_speed.executed_flops([[10, 4]], shape, False, packed=True)
        assert packed < predict_speed.executed_flops([[10, 4]], shape, False)
