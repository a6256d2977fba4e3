"""Training speed: the book's chapter-6 recipe on transformers vs `gptclassify train`.

Both variants start from the same random GPT-2 small weights (written once, seeded, in
Hugging Face format) and the same SMS Spam Collection split, and each runs in a fresh child
process:

- reference: `transformers.GPT2ForSequenceClassification`, trained with the book's loop
  exactly (pad every text to the longest training text, classify from the last position,
  last block + final LayerNorm + head trainable, AdamW 5e-5 / 0.1, batch 8, 5 epochs, loss
  estimates every 50 steps and accuracy estimates each epoch on 5 batches, full accuracies at
  the end), fp32, no autocast.
- ours: `python -m gptclassify train --model <the same folder> ...` with the defaults
  (bf16 where the CPU/GPU has it, frozen-prefix cache, last-real-token pooling).

`--family llama` does the same with a GPT-2-small-sized random Llama (common.LLAMA_SMALL);
`--family gemma3 --gguf FILE` with the real Gemma 3 270M: ours reads the GGUF file
(`--model FILE`), the reference `Gemma3TextForSequenceClassification` on transformers' own
fp32 loading of that file (saved once under --out) with its tokenizer (pad = <pad>).

Run `python benchmarks/train_speed.py --help` for the flags; benchmarks/README.md explains
the table. A full default run takes about 15-20 minutes on a 2-core CPU (the reference is
most of it); `--subset 64 --epochs 1` checks the script in a minute or two.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import common

# ---- the reference: the book's chapter-6 loop on transformers ---------------------------------
# Runs in its own process (`--worker reference`); `BookLoop` mirrors the book's `SpamDataset`,
# `calc_loss_batch`, `calc_loss_loader`, `calc_accuracy_loader`, `evaluate_model` and
# `train_classifier_simple`; `reference_worker` runs its steps in the book's order.


def book_tokenizer(family: str, weights: str):
    """(encode, pad id) of the reference: tiktoken's GPT-2 encoding, as the book, padded with
    <|endoftext|> (GPT-2 and the Llama of GPT-2's ids); Gemma 3: its tokenizer as transformers
    reads it (BOS first, as ours), padded with its <pad>."""
    if family == "gemma3":
        import transformers

        tok = transformers.AutoTokenizer.from_pretrained(weights)
        return (lambda text: tok(text)["input_ids"]), tok.pad_token_id
    import tiktoken

    return tiktoken.get_encoding("gpt2").encode, common.PAD_TOKEN_ID


def book_loaders(splits, encode, pad_token_id: int, seed: int):
    """The book's datasets (encode, cut to max_length, right-pad to the longest training text)
    and loaders (batch 8; train shuffled with a seeded generator, drop_last)."""
    import torch
    from torch.utils.data import DataLoader, Dataset

    label_index = {name: i for i, name in enumerate(splits.label_names)}

    class SpamDataset(Dataset):
        """The book's dataset: encode, cut to max_length, right-pad with the pad id."""

        def __init__(self, part, max_length: int | None = None):
            self.labels = [label_index[y] for y in part.labels]
            self.encoded_texts = [encode(text) for text in part.texts]
            if max_length is None:
                self.max_length = max(len(t) for t in self.encoded_texts)
            else:
                self.max_length = max_length
                self.encoded_texts = [t[: self.max_length] for t in self.encoded_texts]
            self.encoded_texts = [
                t + [pad_token_id] * (self.max_length - len(t)) for t in self.encoded_texts
            ]

        def __getitem__(self, index):
            return (
                torch.tensor(self.encoded_texts[index], dtype=torch.long),
                torch.tensor(self.labels[index], dtype=torch.long),
            )

        def __len__(self) -> int:
            return len(self.labels)

    train_ds = SpamDataset(splits.train)
    val_ds = SpamDataset(splits.validation, max_length=train_ds.max_length)
    test_ds = SpamDataset(splits.test, max_length=train_ds.max_length)
    loader_gen = torch.Generator().manual_seed(seed)
    train_loader = DataLoader(
        train_ds, batch_size=8, shuffle=True, num_workers=0, drop_last=True, generator=loader_gen
    )
    val_loader = DataLoader(val_ds, batch_size=8, shuffle=False, num_workers=0, drop_last=False)
    test_loader = DataLoader(test_ds, batch_size=8, shuffle=False, num_workers=0, drop_last=False)
    return train_loader, val_loader, test_loader


def load_reference_model(family: str, weights: str, pad_token_id: int):
    """transformers' sequence classifier of `family` on `weights`, fp32; returns the model,
    its backbone, width, last block and final norm."""
    import torch
    import transformers

    if family == "gpt2":
        model = transformers.GPT2ForSequenceClassification.from_pretrained(
            weights,
            num_labels=2,
            pad_token_id=pad_token_id,
            # The book fine-tunes with drop_rate 0.0; GPT2Config's defaults are 0.1.
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            dtype=torch.float32,
        )
        backbone = model.transformer
        return model, backbone, model.config.n_embd, backbone.h[-1], backbone.ln_f
    # LlamaForSequenceClassification, Gemma3TextForSequenceClassification: no dropout but
    # attention_dropout, 0.0 by default (as the book's).
    model = transformers.AutoModelForSequenceClassification.from_pretrained(
        weights, num_labels=2, pad_token_id=pad_token_id, dtype=torch.float32
    )
    backbone = model.model
    return model, backbone, model.config.hidden_size, backbone.layers[-1], backbone.norm


def book_trainable(model, width: int, last_block, final_norm, seed: int) -> None:
    """The book: freeze everything, then a new seeded head (nn.Linear(width, 2), with bias:
    it replaces transformers' bias-free `score`), then unfreeze the last block and the final
    norm (GPT-2's ln_f; Llama's and Gemma's RMSNorm `norm`)."""
    import torch

    for p in model.parameters():
        p.requires_grad = False
    torch.manual_seed(seed)
    model.score = torch.nn.Linear(width, 2)
    for p in last_block.parameters():
        p.requires_grad = True
    for p in final_norm.parameters():
        p.requires_grad = True


class BookLoop:
    """The book's training and evaluation functions over one model and its three loaders.

    Also records the time of every training step and every no-grad batch, for
    --reference-steps (a perf_counter pair per batch: nothing the loop would notice)."""

    def __init__(self, model, backbone, loaders, device):
        self.model, self.backbone, self.device = model, backbone, device
        self.train_loader, self.val_loader, self.test_loader = loaders
        self.step_times: list[float] = []
        self.forward_times: list[tuple[int, float]] = []  # (rows, seconds)
        self.history: dict[str, list] = {"steps": [], "epochs": []}

    def forward_last(self, input_batch):
        # The book's `model(input_batch)[:, -1, :]`: logits of the LAST position, padding or
        # not. XForSequenceClassification.forward would instead pool at the last token that
        # is not pad_token_id, so its own `.logits` are not the book's function; the
        # backbone + head are run directly. No attention mask, as in the book.
        hidden = self.backbone(input_ids=input_batch, use_cache=False).last_hidden_state
        return self.model.score(hidden)[:, -1, :]  # (B, T, 2) -> (B, 2)

    def timed_forward(self, input_batch):
        t = time.perf_counter()
        logits = self.forward_last(input_batch)
        self.forward_times.append((input_batch.shape[0], time.perf_counter() - t))
        return logits

    def calc_loss_batch(self, input_batch, target_batch):
        import torch.nn.functional as F

        input_batch, target_batch = input_batch.to(self.device), target_batch.to(self.device)
        return F.cross_entropy(self.forward_last(input_batch), target_batch)

    def first_batches(self, data_loader, num_batches=None):
        """The book's `num_batches = ...` and `for i, (input_batch, target_batch) in
        enumerate(data_loader): if i < num_batches: <move to device> ... else: break`."""
        num_batches = (
            len(data_loader) if num_batches is None else min(num_batches, len(data_loader))
        )
        for i, (input_batch, target_batch) in enumerate(data_loader):
            if i >= num_batches:
                break
            yield input_batch.to(self.device), target_batch.to(self.device)

    def calc_loss_loader(self, data_loader, num_batches=None):
        import torch.nn.functional as F

        total_loss = 0.0
        if len(data_loader) == 0:
            return float("nan")
        n = 0
        for input_batch, target_batch in self.first_batches(data_loader, num_batches):
            total_loss += F.cross_entropy(self.timed_forward(input_batch), target_batch).item()
            n += 1
        return total_loss / n

    def calc_accuracy_loader(self, data_loader, num_batches=None):
        import torch

        self.model.eval()  # the book leaves eval mode on; train_classifier_simple re-enters train()
        correct, examples = 0, 0
        for input_batch, target_batch in self.first_batches(data_loader, num_batches):
            with torch.no_grad():
                logits = self.timed_forward(input_batch)
            predicted = torch.argmax(logits, dim=-1)
            examples += predicted.shape[0]
            correct += (predicted == target_batch).sum().item()
        return correct / examples

    def evaluate_model(self, eval_iter):
        import torch

        self.model.eval()
        with torch.no_grad():
            train_loss = self.calc_loss_loader(self.train_loader, num_batches=eval_iter)
            val_loss = self.calc_loss_loader(self.val_loader, num_batches=eval_iter)
        self.model.train()
        return train_loss, val_loss

    def train_classifier_simple(self, optimizer, num_epochs, eval_freq, eval_iter, max_steps=None):
        examples_seen, global_step = 0, -1
        for epoch in range(num_epochs):
            self.model.train()
            for input_batch, target_batch in self.train_loader:
                if max_steps is not None and global_step + 1 >= max_steps:
                    return examples_seen  # --reference-steps: the rest is priced
                t_step = time.perf_counter()
                optimizer.zero_grad()
                loss = self.calc_loss_batch(input_batch, target_batch)
                loss.backward()
                optimizer.step()
                self.step_times.append(time.perf_counter() - t_step)
                examples_seen += input_batch.shape[0]
                global_step += 1
                if global_step % eval_freq == 0:
                    train_loss, val_loss = self.evaluate_model(eval_iter)
                    self.history["steps"].append(
                        {
                            "epoch": epoch + 1,
                            "step": global_step,
                            "train_loss": train_loss,
                            "val_loss": val_loss,
                        }
                    )
                    _log(
                        f"Ep {epoch + 1} (Step {global_step:06d}): "
                        f"Train loss {train_loss:.3f}, Val loss {val_loss:.3f}"
                    )
            train_acc = self.calc_accuracy_loader(self.train_loader, num_batches=eval_iter)
            val_acc = self.calc_accuracy_loader(self.val_loader, num_batches=eval_iter)
            self.history["epochs"].append(
                {"epoch": epoch + 1, "train_accuracy": train_acc, "val_accuracy": val_acc}
            )
            _log(
                f"Training accuracy: {train_acc * 100:.2f}% | Validation accuracy: {val_acc * 100:.2f}%"
            )
        return examples_seen

    def pooling_check(self, pad_token_id: int) -> str:
        """Not part of the recipe: on the first validation batch, does transformers' own
        pooling (last non-pad token) give the book's logits (last position)? Only rows
        without padding can agree."""
        import torch

        with torch.no_grad():
            input_batch = next(iter(self.val_loader))[0].to(self.device)
            own = self.model(input_ids=input_batch, use_cache=False).logits  # (B, 2)
            same = int(torch.isclose(own, self.forward_last(input_batch), atol=1e-4).all(-1).sum())
            unpadded = int((input_batch[:, -1] != pad_token_id).sum())
        return f"{same}/{input_batch.shape[0]} rows of the first validation batch ({unpadded} unpadded)"


def reference_worker(args: argparse.Namespace) -> None:
    import torch
    import transformers

    from gptclassify.data import load_prepared

    torch.set_num_threads(args.threads)
    device = _device(args.device)
    splits = load_prepared(args.data)

    t_start = time.perf_counter()
    encode, pad = book_tokenizer(args.family, args.weights)
    loaders = book_loaders(splits, encode, pad, args.seed)
    train_loader, val_loader, test_loader = loaders
    t_load = time.perf_counter()
    model, backbone, width, last_block, final_norm = load_reference_model(
        args.family, args.weights, pad
    )
    load_s = time.perf_counter() - t_load
    book_trainable(model, width, last_block, final_norm, args.seed)
    model.to(device)
    loop = BookLoop(model, backbone, loaders, device)

    t_train = time.perf_counter()
    setup_s = t_train - t_start
    torch.manual_seed(args.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5, weight_decay=0.1)
    examples_seen = loop.train_classifier_simple(
        optimizer, args.epochs, eval_freq=50, eval_iter=5, max_steps=args.reference_steps
    )
    train_s = time.perf_counter() - t_train
    _log(f"Training completed in {train_s / 60:.2f} minutes.")

    steps = args.epochs * len(train_loader)
    result = {
        "variant": "reference",
        "family": args.family,
        "device": str(device),
        "dtype": "float32",
        "threads": torch.get_num_threads(),
        "attn_implementation": getattr(model.config, "_attn_implementation", None),
        "pad_length": train_loader.dataset.max_length,
        "rows": {"train": len(train_loader.dataset), "validation": len(val_loader.dataset),
                 "test": len(test_loader.dataset)},
        "split_digest": common.split_digest(splits),
        "epochs": args.epochs,
        "steps": steps,
    }  # fmt: skip
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if args.reference_steps is not None:
        priced = price_reference(
            loop.step_times,
            loop.forward_times,
            steps=steps,
            epochs=args.epochs,
            eval_rows=_eval_rows(train_loader, val_loader, test_loader, args.epochs),
        )
        priced.update(measured_loop_s=train_s, setup_s=setup_s, load_s=load_s)
        _log(
            f"Priced from {len(loop.step_times)} steps: training loop "
            f"{priced['training_time_s']:.1f} s, final accuracies {priced['final_s']:.1f} s"
        )
        result.update(
            examples_seen=steps * 8,
            training_time_s=priced["training_time_s"],
            total_time_s=setup_s + priced["training_time_s"] + priced["final_s"],
            train_accuracy=None,
            val_accuracy=None,
            test_accuracy=None,
            trainable_params=trainable,
            check_s=0.0,
            priced=priced,
        )
    else:
        # The book's final numbers: its loaders (train: shuffled, drop_last), every batch.
        train_accuracy = loop.calc_accuracy_loader(train_loader)
        val_accuracy = loop.calc_accuracy_loader(val_loader)
        test_accuracy = loop.calc_accuracy_loader(test_loader)
        total_s = time.perf_counter() - t_start
        _log(
            f"Training accuracy: {train_accuracy * 100:.2f}% | Validation accuracy: "
            f"{val_accuracy * 100:.2f}% | Test accuracy: {test_accuracy * 100:.2f}%"
        )
        t_check = time.perf_counter()  # its time is taken off the wall time
        pooling = loop.pooling_check(pad)
        result.update(
            examples_seen=examples_seen,
            load_s=load_s,
            training_time_s=train_s,
            total_time_s=total_s,
            train_accuracy=train_accuracy,
            val_accuracy=val_accuracy,
            test_accuracy=test_accuracy,
            trainable_params=trainable,
            hf_pooling_equals_last_position=pooling,
            check_s=time.perf_counter() - t_check,
        )
    result.update(
        history=loop.history,
        peak_memory_mb=_peak_memory_mb(torch, device),
        versions={"torch": torch.__version__, "transformers": transformers.__version__},
    )
    common.write_json(Path(args.result), result)


def _eval_rows(train_loader, val_loader, test_loader, epochs: int) -> dict[str, int]:
    """Rows the full recipe runs through the model without gradients, by where (the
    book's `evaluate_model` every 50 steps, the per-epoch accuracies, the final accuracies)."""

    def rows(loader, num_batches=None):
        n = len(loader) if num_batches is None else min(num_batches, len(loader))
        sizes = [8] * len(loader)
        if not loader.drop_last and len(loader.dataset) % 8:
            sizes[-1] = len(loader.dataset) % 8
        return sum(sizes[:n])

    steps = epochs * len(train_loader)
    evaluations = len(range(0, steps, 50))  # global_step 0, 50, 100, ...
    per_eval = rows(train_loader, 5) + rows(val_loader, 5)
    return {
        "loop": evaluations * per_eval + epochs * per_eval,
        "final": rows(train_loader) + rows(val_loader) + rows(test_loader),
    }


def price_reference(
    step_times: list[float],
    forward_times: list[tuple[int, float]],
    steps: int,
    epochs: int,
    eval_rows: dict[str, int],
) -> dict[str, float]:
    """The full recipe's time from its first `len(step_times)` steps (--reference-steps).

    Every batch of the book's loop has the same shape (8 rows padded to the longest training
    text), so a step costs the same all run long: the unmeasured steps are priced at the mean
    of the measured ones after the first (the first pays one-off kernel set-up, which the
    full run pays once too, so it is counted as measured), and the loop's unmeasured no-grad
    batches (loss estimates, accuracy estimates) and the final accuracies at the measured
    no-grad cost per row.
    """
    if len(step_times) < 2 or not forward_times:
        raise SystemExit("--reference-steps must be >= 2 (steps after the first are averaged)")
    per_step = sum(step_times[1:]) / (len(step_times) - 1)
    per_row = sum(s for _, s in forward_times) / sum(n for n, _ in forward_times)
    measured_rows = sum(n for n, _ in forward_times)
    loop = (
        sum(step_times)
        + (steps - len(step_times)) * per_step
        + sum(s for _, s in forward_times)
        + max(eval_rows["loop"] - measured_rows, 0) * per_row
    )
    return {
        "measured_steps": len(step_times),
        "step_s": per_step,
        "no_grad_row_s": per_row,
        "measured_no_grad_rows": measured_rows,
        "training_time_s": loop,
        "final_s": eval_rows["final"] * per_row,
        "epochs": epochs,
    }


def _device(name: str):
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(name)


def _peak_memory_mb(torch, device) -> float:
    import resource

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10


def _log(line: str) -> None:
    print(line, flush=True)


# ---- the driver ------------------------------------------------------------------------------


BOOK_POOLING = ("--pool", "last", "--pad-to", "longest")
"""The reference's choice of position (the last, padded one; every text padded to the longest
training text). Ours' default (the last real token, per-batch padding) is a different function
of the same weights, so this row separates the speed of the code from the effect of that choice."""

OURS_VARIANTS = {
    # name: (precision, cache, other train flags); None: from --precision / --cache
    "ours": (None, None, ()),
    "ours book pooling": (None, None, BOOK_POOLING),
    "ours fp32, no cache": ("fp32", "off", ()),
    "ours bf16, no cache": ("bf16", "off", ()),
    "ours fp32, cache": ("fp32", "auto", ()),
    "ours bf16, cache": ("bf16", "auto", ()),
}
DEFAULT_VARIANTS = ("ours", "ours book pooling")
"""What runs without --ablation, and with each --train-seeds seed."""


def prepare_data(args: argparse.Namespace, out: Path):
    """The split both variants use; with --subset, written to a folder ours reads with --data."""
    from gptclassify.data import write_splits
    from gptclassify.data.sms_spam import prepare_sms_spam

    splits = prepare_sms_spam(
        source=str(args.sms_source), seed=args.seed, book_split=args.book_split
    )
    if args.subset:
        if args.subset > len(splits.train):
            raise SystemExit(
                f"--subset {args.subset}: the training split has {len(splits.train)} rows"
            )
        splits.train = splits.train.subset(range(args.subset))
    data_dir = out / ("data" if not args.subset else f"data-subset{args.subset}")
    shutil.rmtree(data_dir, ignore_errors=True)
    write_splits(splits, data_dir, {"written_by": "benchmarks/train_speed.py"})
    return splits, data_dir


def _tag(args) -> str:
    return common.family_tag(args.family)


def run_reference(args, weights: Path, data_dir: Path, out: Path) -> dict[str, Any]:
    result_path = out / f"reference{_tag(args)}.json"
    result_path.unlink(missing_ok=True)
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        "reference",
        "--weights",
        str(weights),
        "--data",
        str(data_dir),
        "--result",
        str(result_path),
        "--epochs",
        str(args.epochs),
        "--threads",
        str(args.threads),
        "--device",
        args.device,
        "--seed",
        str(args.seed),
        "--family",
        args.family,
    ]
    if args.reference_steps is not None:
        cmd += ["--reference-steps", str(args.reference_steps)]
    log = out / f"reference{_tag(args)}.log"
    print(f"[reference] book loop on transformers, log: {log}", flush=True)
    child = common.run_child(cmd, common.child_env(args.threads), log)
    common.check_child(child, "the reference run")
    result = json.loads(result_path.read_text())
    # The pooling check after the recipe is not part of it.
    wall = child.wall_s - result["check_s"]
    if "priced" in result:
        # The measured steps' time out, the priced full loop and final accuracies in.
        priced = result["priced"]
        wall += priced["training_time_s"] + priced["final_s"] - priced["measured_loop_s"]
    result.update(
        wall_s=wall,
        process_wall_s=child.wall_s,
        maxrss_mb=child.maxrss_mb,
        measured_at=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    )
    print(f"[reference] done in {wall:.1f} s", flush=True)
    return result


_SAME_RUN = (
    "seed", "epochs", "subset", "book_split", "threads", "device", "gpt2_dir", "family",
    "reference_steps", "gguf",
)  # fmt: skip


def earlier_reference(args, out: Path, digest: str) -> dict[str, Any]:
    """The reference result of an earlier invocation, if it measured the same thing."""
    path = out / f"train_speed{_tag(args)}.json"
    if not path.exists():
        raise SystemExit(f"--reuse-reference: {path} does not exist; run once without it")
    earlier = json.loads(path.read_text())
    ref = next((r for r in earlier["results"] if r["variant"].startswith("reference")), None)
    if ref is None:
        raise SystemExit(f"--reuse-reference: {path} has no reference result")
    # JSON holds paths as strings.
    now = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    differ = [
        k for k in _SAME_RUN if earlier["args"].get(k, "gpt2" if k == "family" else None) != now[k]
    ]
    if ref.get("split_digest") != digest:
        differ.append("data split")
    if differ:
        raise SystemExit(f"--reuse-reference: {path} was run with other {', '.join(differ)}")
    ref["reused"] = True
    when = ref.get("measured_at", "an earlier run")
    print(f"[reference] reused from {path} ({when}): {ref['wall_s']:.1f} s", flush=True)
    return ref


def run_ours(
    args, name: str, weights: Path, data_dir: Path, out: Path, seed: int | None = None
) -> dict[str, Any]:
    """One `gptclassify train` child. `seed`: a training seed on the driver's split (--data)."""
    precision, cache, flags = OURS_VARIANTS[name]
    precision = precision or args.precision
    cache = cache or args.cache
    slug = (
        (f"{args.family}-" if args.family != "gpt2" else "")
        + name.replace(",", "").replace(" ", "-")
        + (f"-seed{seed}" if seed is not None else "")
    )
    run_dir = out / "runs" / slug
    shutil.rmtree(run_dir, ignore_errors=True)
    cmd = common.gptclassify(
        "train",
        "--model",
        str(weights),
        "--epochs",
        str(args.epochs),
        "--seed",
        str(args.seed if seed is None else seed),
        "--device",
        args.device,
        "--precision",
        precision,
        "--cache",
        cache,
        "--out",
        str(run_dir),
        "--overwrite",
        "--quiet",
        *flags,
        *(["--compile"] if args.compile else []),
    )
    if args.subset or seed is not None:
        cmd += ["--data", str(data_dir)]
    else:
        cmd += ["--sms-source", str(args.sms_source)]
        if args.book_split:
            cmd.append("--book-split")
    print(f"[{name}] {' '.join(cmd[1:])}", flush=True)
    child = common.run_child(cmd, common.child_env(args.threads), out / f"{slug}.log")
    common.check_child(child, f"`{' '.join(cmd[1:4])}` ({name})")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    from gptclassify.data import load_prepared

    result = {
        "variant": name,
        "train_seed": args.seed if seed is None else seed,
        "cmd": cmd,
        "wall_s": child.wall_s,
        "maxrss_mb": child.maxrss_mb,
        "split_digest": common.split_digest(load_prepared(run_dir / "data")),
        "precision": metrics.get("precision"),
        "frozen_prefix_cache": metrics.get("frozen_prefix_cache"),
        "device": metrics.get("device"),
        "training_time_s": metrics.get("training_time_s"),
        "total_time_s": metrics.get("total_time_s"),
        "peak_memory_mb": metrics.get("peak_memory_mb"),
        "train_accuracy": metrics["train"]["accuracy"],
        "val_accuracy": metrics["validation"]["accuracy"],
        "test_accuracy": metrics.get("test", {}).get("accuracy", math.nan),
        "best_epoch": metrics.get("best_epoch"),
        "run_dir": str(run_dir),
    }
    if not args.keep_runs:
        # 500 MB of weights per run; the metrics, logs and plots stay.
        (run_dir / "model.safetensors").unlink(missing_ok=True)
    print(f"[{name}] done in {child.wall_s:.1f} s", flush=True)
    return result


def report(
    results: list[dict[str, Any]],
    reference: dict[str, Any] | None,
    split_digest: str,
    repeats: list[dict[str, Any]] | None = None,
) -> str:
    headers = [
        "variant",
        "wall s",
        "train-loop s",
        "speed-up",
        "test acc %",
        "train acc %",
        "val acc %",
        "peak RSS MB",
        "same split",
    ]
    rows = []
    for r in results:
        speedup = reference["wall_s"] / r["wall_s"] if reference else None
        rows.append(
            [
                _label(r),
                r["wall_s"],
                r["training_time_s"],
                speedup,
                _percent(r["test_accuracy"]),
                _percent(r["train_accuracy"]),
                _percent(r["val_accuracy"]),
                r["maxrss_mb"],
                "yes" if r["split_digest"] == split_digest else "NO",
            ]
        )
    lines = [common.format_table(headers, rows)]
    ours = [r for r in results if r["variant"] != "reference"]
    if reference and ours:
        # The default settings when they ran, else (--ablation) the fastest variant.
        main = next(
            (r for r in ours if r["variant"] == "ours"), min(ours, key=lambda r: r["wall_s"])
        )
        lines.append("")
        lines += _against_reference(main, reference)
        same = next((r for r in ours if r["variant"] == "ours book pooling"), None)
        if same is not None:
            lines += _against_reference(same, reference)
    if repeats:
        lines += ["", _seed_table(results + repeats, reference)]
    return "\n".join(lines)


def _against_reference(r: dict[str, Any], reference: dict[str, Any]) -> list[str]:
    speedup = reference["wall_s"] / r["wall_s"]
    inner = reference["total_time_s"] / r["total_time_s"]
    loop = reference["training_time_s"] / r["training_time_s"]
    lines = [
        f"speed-up reference/{_label(r)}: {speedup:.1f}x wall clock "
        f"(target >= 20x: {'met' if speedup >= 20 else 'NOT met'}); "
        f"{inner:.1f}x in-process total; {loop:.1f}x training loop only",
    ]
    if reference["test_accuracy"] is None:  # priced from its first steps: no accuracy
        return lines
    diff = (r["test_accuracy"] - reference["test_accuracy"]) * 100
    return lines + [
        f"test accuracy, {_label(r)} - reference: {diff:+.2f} points "
        f"(target >= -1: {'met' if diff >= -1 else 'NOT met'})",
    ]


def _percent(value: float | None) -> float | None:
    return None if value is None else value * 100


def _seed_table(results: list[dict[str, Any]], reference: dict[str, Any] | None) -> str:
    """Test accuracy over training seeds on the same split: how much one run's figure can move."""
    import statistics

    rows = []
    for name in DEFAULT_VARIANTS:
        runs = [r for r in results if r["variant"] == name]
        if len(runs) < 2:
            continue
        acc = [r["test_accuracy"] * 100 for r in runs]
        seeds = ",".join(str(r["train_seed"]) for r in runs)
        rows.append(
            [
                _label(runs[0]),
                seeds,
                statistics.mean(acc),
                statistics.stdev(acc),
                min(acc),
                max(acc),
            ]
        )
    if reference and reference["test_accuracy"] is not None:
        rows.append(
            [_label(reference), "as its row", reference["test_accuracy"] * 100] + [None] * 3
        )
    headers = ["variant", "training seeds", "test acc % mean", "sd", "min", "max"]
    return "Training seeds on the same split and weights:\n" + common.format_table(headers, rows)


def _label(r: dict[str, Any]) -> str:
    if r["variant"] == "reference":
        reused = ", reused" if r.get("reused") else ""
        priced = r.get("priced")
        if priced:
            reused += f", priced from {priced['measured_steps']} steps"
        return (
            f"reference (HF, book loop, {r['dtype'].replace('float', 'fp')}, "
            f"pad {r['pad_length']}{reused})"
        )
    precision = r["precision"].replace("bfloat", "bf").replace("float", "fp")
    cache = "cache" if r["frozen_prefix_cache"] else "no cache"
    # What the run actually used (metrics.json), not only what was asked for.
    what = {"ours": " default", "ours book pooling": " book pooling"}.get(r["variant"], "")
    return f"ours ({precision}, {cache}){what}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    common.add_sms_source(p)
    p.add_argument(
        "--book-split", action="store_true", help="The book's parse and exact 1,045/149/300 rows."
    )
    p.add_argument("--epochs", type=int, default=5, help="Epochs for both variants.")
    p.add_argument(
        "--subset",
        type=int,
        default=None,
        help="Train on the first N training rows only (quick checks).",
    )
    which = p.add_mutually_exclusive_group()
    which.add_argument("--skip-reference", action="store_true", help="Run only ours.")
    which.add_argument("--only-reference", action="store_true", help="Run only the reference.")
    which.add_argument(
        "--reuse-reference",
        action="store_true",
        help="Take the reference's figures from OUT/train_speed.json of an earlier run with the "
        "same seed, epochs, subset, split, threads and device (it takes ~20 minutes).",
    )
    p.add_argument(
        "--ablation",
        action="store_true",
        help="Run ours four times: fp32/bf16 x frozen-prefix cache off/on (plus the reference "
        "unless --skip-reference).",
    )
    p.add_argument(
        "--skip-book-pooling",
        action="store_true",
        help="Run ours with its defaults only (not also with --pool last --pad-to longest).",
    )
    p.add_argument(
        "--train-seeds",
        type=int,
        default=0,
        help="Also train ours (default and book pooling) with training seeds 1..N on the same "
        "split and weights, and print how test accuracy varies with the seed alone.",
    )
    p.add_argument(
        "--precision", choices=["auto", "fp32", "bf16"], default="auto", help="Ours: --precision."
    )
    p.add_argument("--cache", choices=["auto", "off"], default="auto", help="Ours: --cache.")
    p.add_argument("--compile", action="store_true", help="Ours: --compile (torch.compile).")
    p.add_argument(
        "--device", default="auto", help="Both variants: auto (cuda, mps, cpu), cpu, cuda."
    )
    p.add_argument(
        "--threads",
        type=int,
        default=common.default_threads(),
        help="torch threads for every variant.",
    )
    p.add_argument("--seed", type=int, default=123, help="Weights, head, data split and order.")
    common.add_family_args(
        p,
        "The model: GPT-2 small (GPT2ForSequenceClassification for the reference) or a "
        "GPT-2-small-sized Llama (common.LLAMA_SMALL, LlamaForSequenceClassification), random "
        "weights either way; or the real Gemma 3 270M from --gguf FILE "
        "(Gemma3TextForSequenceClassification).",
    )
    p.add_argument(
        "--reference-steps",
        type=int,
        default=None,
        help="Run only the first N training steps of the reference and price the full recipe "
        "from them (every step has the same shape; see price_reference). Default: run it all.",
    )
    p.add_argument(
        "--gpt2-dir",
        type=Path,
        default=None,
        help="A Hugging Face GPT-2 small folder (config.json + model.safetensors), e.g. the "
        "pretrained gpt2 from the Hub cache, instead of random weights.",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=common.DEFAULT_OUT,
        help="Output folder (weights cache, logs, JSON).",
    )
    p.add_argument(
        "--keep-runs", action="store_true", help="Keep model.safetensors of ours' run folders."
    )
    # Internal: the child process that runs the reference.
    p.add_argument("--worker", choices=["reference"], help=argparse.SUPPRESS)
    p.add_argument("--weights", help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.epochs < 1 or args.threads < 1 or (args.subset is not None and args.subset < 8):
        p.error("--epochs and --threads must be >= 1, --subset >= 8 (one batch)")
    if args.reference_steps is not None and args.reference_steps < 2:
        p.error("--reference-steps must be >= 2 (the steps after the first are averaged)")
    if args.gpt2_dir and args.family != "gpt2":
        p.error("--gpt2-dir is a GPT-2 folder: leave --family at gpt2")
    if not args.worker:
        common.check_family_args(p, args)
    return args


def main(argv: list[str] | None = None) -> None:
    common.setup_offline_env()
    args = parse_args(argv)
    if args.worker == "reference":
        reference_worker(args)
        return

    import torch

    torch.set_num_threads(args.threads)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    if args.gpt2_dir:
        weights = args.gpt2_dir.resolve()
        if not (weights / "config.json").is_file():
            raise SystemExit(f"--gpt2-dir {weights}: no config.json (a Hugging Face GPT-2 folder)")
        what = f"weights from {weights}"
    else:
        weights = common.ensure_weights(args.family, out, args.seed, args.gguf)
        what = f"random weights, seed {args.seed}"
    # Ours reads the GGUF file itself; the reference its transformers-loaded copy (`weights`).
    ours_weights = weights
    if args.gguf:
        ours_weights, what = args.gguf, f"weights from {args.gguf.name}"
    splits, data_dir = prepare_data(args, out)
    digest = common.split_digest(splits)
    print(
        "Data: "
        + ", ".join(f"{name} {len(part)}" for name, part in splits.parts())
        + f" rows ({'book split' if args.book_split else 'default parse'}"
        + (f", train subset {args.subset}" if args.subset else "")
        + f"); threads {args.threads}",
        flush=True,
    )

    t0 = time.perf_counter()
    results: list[dict[str, Any]] = []
    reference = None
    if args.reuse_reference:
        reference = earlier_reference(args, out, digest)
        results.append(reference)
    elif not args.skip_reference:
        reference = run_reference(args, weights, data_dir, out)
        results.append(reference)
    if not args.only_reference:
        names = (
            [n for n in OURS_VARIANTS if n not in DEFAULT_VARIANTS]
            if args.ablation
            else DEFAULT_VARIANTS[:1]
            if args.skip_book_pooling
            else DEFAULT_VARIANTS
        )
        for name in names:
            results.append(run_ours(args, name, ours_weights, data_dir, out))
    repeats = []
    if args.train_seeds and not args.only_reference:
        for seed in range(1, args.train_seeds + 1):
            for name in DEFAULT_VARIANTS:
                repeats.append(run_ours(args, name, ours_weights, data_dir, out, seed=seed))

    table = report(results, reference, digest, repeats)
    if reference and not args.only_reference and (args.subset or args.epochs != 5):
        table += (
            "\n(the targets are for the full default run: --subset/--epochs change the share of "
            "fixed costs such as imports, caching and final evaluation)"
        )
    info = common.machine_info()
    header = (
        f"Training speed: {common.MODEL_NAMES[args.family]} ({what}), SMS spam "
        f"{len(splits.train)}/{len(splits.validation)}/{len(splits.test)}, {args.epochs} epoch(s), "
        f"{info['cpu']}, {args.threads} thread(s), torch {info['torch']}\nCPU: {info['cpu_line']}"
    )
    data = {
        "args": vars(args),
        "machine": info,
        "split_digest": digest,
        "results": results,
        "seed_repeats": repeats,
    }
    common.publish(out, f"train_speed{_tag(args)}", header, table, t0, data)


if __name__ == "__main__":
    main()
