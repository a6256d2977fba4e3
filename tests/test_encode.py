"""Input policies (--pad-to, --max-length, --truncate) and batching helpers."""

from __future__ import annotations

import pytest
import torch

from gptclassify import tokenizer
from gptclassify.data.batches import shuffled_batches, token_budget_batches
from gptclassify.data.encode import InputPolicy, encode, tokenize
from gptclassify.errors import GPTClassifyError

TEXTS = ["one two three", "a much longer message with quite a few more words in it", "hi"]


def test_pad_to_batch_keeps_texts_unpadded():
    enc = encode(TEXTS, InputPolicy.resolve("batch", None, "end", 64))
    assert [len(s) for s in enc.ids] == enc.lengths.tolist()
    assert enc.truncated == 0


def test_pad_to_longest_uses_the_longest_training_text_and_cuts_others():
    policy = InputPolicy.resolve("longest", None, "end", 1024, train_lengths=[3, 5, 4])
    assert policy.pad_length == policy.max_length == 5
    enc = encode(TEXTS, policy)
    assert all(len(s) == 5 for s in enc.ids)
    assert enc.truncated == 1 and enc.lengths.tolist() == [3, 5, 1]
    assert enc.ids[2][1:] == [50256] * 4


def test_pad_to_context_pads_to_the_model_context():
    enc = encode(TEXTS, InputPolicy.resolve("context", None, "end", 48))
    assert all(len(s) == 48 for s in enc.ids)
    assert enc.lengths.tolist()[0] == 3


def test_pad_to_number_and_none():
    enc = encode(TEXTS, InputPolicy.resolve("6", None, "end", 48))
    assert all(len(s) == 6 for s in enc.ids) and enc.truncated == 1
    none = InputPolicy.resolve("none", None, "end", 48)
    assert none.pad_length is None
    with pytest.raises(GPTClassifyError, match="--pad-to 100 exceeds the model context"):
        InputPolicy.resolve("100", None, "end", 48)


def test_truncation_side_and_max_length():
    keep_start = encode(TEXTS[1:2], InputPolicy.resolve("batch", 4, "end", 64))
    keep_end = encode(TEXTS[1:2], InputPolicy.resolve("batch", 4, "start", 64))
    full = encode(TEXTS[1:2], InputPolicy.resolve("batch", None, "end", 64)).ids[0]
    assert keep_start.ids[0] == full[:4] and keep_end.ids[0] == full[-4:]
    assert keep_start.truncated == 1
    # A cap above the context is clipped to the context: texts never crash the model.
    assert InputPolicy.resolve("batch", 5000, "end", 64).max_length == 64


def test_empty_text_is_refused_with_its_position():
    with pytest.raises(GPTClassifyError, match="text 2 is empty"):
        encode(["fine", ""], InputPolicy.resolve("batch", None, "end", 64))


def test_batches_cover_every_index_once():
    lengths = torch.tensor([5, 1, 9, 3, 3, 7, 2])
    batches = token_budget_batches(lengths, max_tokens=12)
    flat = torch.cat(batches).tolist()
    assert sorted(flat) == list(range(7))
    for b in batches:
        assert len(b) == 1 or int(lengths[b].max()) * len(b) <= 12
    shuffled = shuffled_batches(
        10, 3, shuffle=True, drop_last=True, generator=torch.Generator().manual_seed(0)
    )
    assert [len(b) for b in shuffled] == [3, 3, 3]
    assert len(set(torch.cat(shuffled).tolist())) == 9


def test_length_grouped_batches_pad_less_and_still_cover_the_data_at_random():
    gen = torch.Generator().manual_seed(0)
    lengths = torch.randint(1, 400, (1000,), generator=gen) ** 2 // 400 + 1  # long-tailed
    batch = 8

    def padded(batches):
        return sum(int(lengths[b].max()) * len(b) for b in batches)

    def draw(seed, grouped):
        return shuffled_batches(
            len(lengths),
            batch,
            shuffle=True,
            drop_last=True,
            generator=torch.Generator().manual_seed(seed),
            lengths=lengths if grouped else None,
        )

    plain, grouped = draw(1, False), draw(1, True)
    assert all(len(b) == batch for b in grouped) and len(grouped) == len(plain) == 125
    assert sorted(torch.cat(grouped).tolist()) == list(range(1000))  # 1000 = 125 x 8: all kept
    assert padded(grouped) < 0.75 * padded(plain)
    # Every run of GROUP_BATCHES batches is a random draw: the batch order is shuffled (the
    # longest batches are not all first), and another seed gives other batches.
    widths = [int(lengths[b].max()) for b in grouped]
    assert widths != sorted(widths, reverse=True)
    assert {tuple(b.tolist()) for b in draw(2, True)} != {tuple(b.tolist()) for b in grouped}
    assert draw(1, True)[0].tolist() == grouped[0].tolist()  # the seed decides
    # drop_last drops the one short batch (the shortest texts of the last run).
    ragged = shuffled_batches(
        21, 4, True, True, torch.Generator().manual_seed(0), lengths=lengths[:21]
    )
    assert [len(b) for b in ragged] == [4] * 5


def test_tokenize_in_chunks_equals_one_text_at_a_time():
    texts = [f"message {i}: " + "free prize " * (i % 7) for i in range(25)]
    chunks: list[int] = []

    def batch(part):
        chunks.append(len(part))
        return tokenizer.encode_batch(part)

    result = tokenize(texts, batch, chunk=10)
    assert chunks == [10, 10, 5]  # the tokenizer's batch encoding, a chunk at a time
    assert result.ids == [tokenizer.encode(t) for t in texts]
    assert result.tokens == sum(len(tokenizer.encode(t)) for t in texts)
    assert result.seconds > 0 and result.seconds_per_million > 0
    # Any tokenizer with a batch method stands in (here: one id per character).
    assert tokenize(["ab", "c"], lambda part: [[ord(ch) for ch in t] for t in part]).ids == [
        [97, 98],
        [99],
    ]
