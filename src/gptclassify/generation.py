"""Text generation with a GPTModel: greedy, temperature, top-k, stop at the end-of-text token.

No KV cache: generation here is a sanity check of loaded weights (greedy text from real
GPT-2 weights reads as English; a wrong mapping gives gibberish), not a
serving path, so each step reruns the (cropped) context.
"""

from __future__ import annotations

import torch
from torch import Tensor

from gptclassify.config import PAD_TOKEN_ID
from gptclassify.errors import GPTClassifyError
from gptclassify.model import GPTModel
from gptclassify.tokenizer import Tokenizer, gpt2

TEMPERATURES = (1e-3, 1e3)
"""Sampling temperatures besides 0 (greedy): dividing logits by a subnormal one gives inf and
NaN probabilities, by inf a uniform draw over the vocabulary."""


def check_temperature(temperature: float) -> float:
    """0 (greedy) or a finite number within TEMPERATURES, or one line naming the flag."""
    low, high = TEMPERATURES
    if not (temperature == 0.0 or low <= temperature <= high):
        raise GPTClassifyError(
            f"--temperature {temperature}: 0 (greedy) or a number from {low:g} to {high:g}"
        )
    return temperature


@torch.inference_mode()
def generate(
    model: GPTModel,
    input_ids: Tensor,
    max_new_tokens: int,
    temperature: float = 0.0,
    top_k: int | None = None,
    eos_id: int | None = PAD_TOKEN_ID,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Extend `input_ids` (B, T) by up to `max_new_tokens` tokens; returns (B, T + n).

    temperature 0 is greedy (argmax, deterministic). Otherwise logits are divided by the
    temperature, optionally restricted to the `top_k` largest, and sampled. Generation stops
    once every row has produced `eos_id`; rows that finished early are filled with it. The
    context fed to the model is cropped on the left to the model's context length.
    """
    if max_new_tokens < 0:
        raise ValueError("max_new_tokens must be >= 0")
    check_temperature(temperature)
    if top_k is not None and top_k < 1:
        raise ValueError("top_k must be >= 1")
    was_training = model.training
    model.eval()
    ctx = model.config.context_length
    finished = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
    try:
        for _ in range(max_new_tokens):
            logits = model(input_ids[:, -ctx:])[:, -1, :].float()  # (B, vocab)
            if temperature == 0.0:
                next_id = logits.argmax(dim=-1, keepdim=True)  # (B, 1)
            else:
                logits = logits / temperature
                if top_k is not None:
                    kth = torch.topk(logits, min(top_k, logits.shape[-1])).values[:, -1:]
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                probs = torch.softmax(logits, dim=-1)
                next_id = torch.multinomial(probs, num_samples=1, generator=generator)
            if eos_id is not None:
                next_id = next_id.masked_fill(finished[:, None], eos_id)
                finished |= next_id[:, 0] == eos_id
            input_ids = torch.cat([input_ids, next_id], dim=1)
            if eos_id is not None and bool(finished.all()):
                break
    finally:
        model.train(was_training)
    return input_ids


def generate_text(
    model: GPTModel,
    prompt: str,
    max_new_tokens: int = 50,
    temperature: float = 0.0,
    top_k: int | None = None,
    seed: int | None = None,
    tokenizer: Tokenizer | None = None,
    chat: bool = False,
) -> str:
    """Prompt plus continuation as text; the model's device is used for the computation.

    tokenizer: the model's (GPT-2's when None); generation stops at its end-of-text token.
    chat: send the prompt as a user's message through the model's chat template and return
    the assistant's answer alone.
    """
    tokenizer = tokenizer or gpt2()
    device = next(model.parameters()).device
    if chat:
        ids = tokenizer.encode_chat([{"role": "user", "content": prompt}])
    else:
        ids = tokenizer.encode(prompt)
    if not ids:
        raise ValueError("the prompt is empty")
    generator = None
    if seed is not None:
        generator = torch.Generator(device=device)
        generator.manual_seed(seed)
    out = generate(
        model,
        torch.tensor([ids], device=device),
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_k=top_k,
        eos_id=tokenizer.eos_id,
        generator=generator,
    )
    new = out[0, len(ids) :].tolist()
    if tokenizer.eos_id in new:
        new = new[: new.index(tokenizer.eos_id)]
    if chat:
        return tokenizer.decode(new)
    # Decode prompt and continuation together: a character's bytes may span the boundary.
    return tokenizer.decode(ids + new)
