"""Small random models of every family written by transformers itself (test helpers)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

VOCAB = 320


def hf_config(family: str, **overrides):
    import transformers

    common = dict(
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=VOCAB,
        max_position_embeddings=128,
        rms_norm_eps=1e-5,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    specific = {
        # Llama 3.1-style rotary scaling, untied head, grouped-query attention.
        "llama": dict(
            rope_scaling={
                "rope_type": "llama3",
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 16,
            },
            rope_theta=500000.0,
        ),
        # SmolLM2 / Llama 3.2 style: tied embeddings, no scaling.
        "llama-tied": dict(tie_word_embeddings=True, num_key_value_heads=4),
        "mistral": dict(num_key_value_heads=1, sliding_window=64, head_dim=16),
        "qwen2": dict(rope_theta=1000000.0),
        "qwen3": dict(head_dim=32, tie_word_embeddings=True),
        # Gemma 3: a window shorter than the test texts, two sliding layers to one global,
        # each type with its own rotary base (linear scaling on the global one), a query
        # scale that is not 1 / sqrt(head_dim).
        "gemma3": dict(
            num_key_value_heads=1,
            head_dim=16,
            sliding_window=5,
            layer_types=["sliding_attention", "sliding_attention", "full_attention"],
            query_pre_attn_scalar=24,
            rope_parameters={
                "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                "full_attention": {"rope_type": "linear", "factor": 2.0, "rope_theta": 1e6},
            },
        ),
    }[family]
    cls = {
        "llama": transformers.LlamaConfig,
        "llama-tied": transformers.LlamaConfig,
        "mistral": transformers.MistralConfig,
        "qwen2": transformers.Qwen2Config,
        "qwen3": transformers.Qwen3Config,
        "gemma3": transformers.Gemma3TextConfig,
    }[family]
    return cls(**(common | specific | overrides))


def hf_class(config, kind: str = "ForCausalLM"):
    import transformers

    name = type(config).__name__.replace("Config", kind)
    # Gemma 3's text-only language model is Gemma3ForCausalLM (its classifier keeps "Text").
    return getattr(transformers, name.replace("Gemma3TextForCausalLM", "Gemma3ForCausalLM"))


def random_hf_model(family: str, seed: int = 0, kind: str = "ForCausalLM", **overrides):
    """A transformers model with weights large enough that logits differ clearly."""
    config = hf_config(family, **overrides)
    torch.manual_seed(seed)
    model = hf_class(config, kind)(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
            else:
                p.normal_(0, 0.25)
    return model


def write_tokenizer(folder: Path, bos: bool = False) -> Path:
    """A small byte-level BPE tokenizer.json (trained here) with chat special tokens, and a
    tokenizer_config.json naming them, as transformers saves them."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|pad|>", "<|begin_of_text|>", "<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    corpus = [
        "Free entry in 2 a wkly comp to win FA Cup final tkts. Text FA to 87121",
        "Ok lar... Joking wif u oni... I'll call you later, see you at the station",
        "Congratulations! You have won a $1000 gift card. Click here to claim now",
    ]
    tok.train_from_iterator(corpus * 20, trainer)
    if bos:
        tok.post_processor = processors.TemplateProcessing(
            single="<|begin_of_text|> $A", special_tokens=[("<|begin_of_text|>", 1)]
        )
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<|begin_of_text|>",
        "eos_token": "<|endoftext|>",
        "pad_token": "<|pad|>",
        "model_max_length": 128,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


def write_hf_family(folder: Path, family: str, seed: int = 0, bos: bool = False) -> Path:
    """A whole Hugging Face model folder: config.json, model.safetensors, tokenizer files."""
    random_hf_model(family, seed).save_pretrained(folder)
    return write_tokenizer(folder, bos=bos)
