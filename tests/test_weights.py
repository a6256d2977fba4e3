"""Loading GPT-2 weights: parity with transformers, strict name/shape checks, the Hub path."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from gptclassify.errors import GPTClassifyError
from gptclassify.weights import load_pretrained


def hf_logits(directory: Path, ids: torch.Tensor) -> torch.Tensor:
    import transformers

    model = transformers.GPT2LMHeadModel.from_pretrained(directory).eval()
    with torch.no_grad():
        return model(ids).logits


def our_logits(directory: Path, ids: torch.Tensor) -> torch.Tensor:
    model = load_pretrained(directory).eval()
    with torch.no_grad():
        return model(ids)


def test_tiny_logits_match_transformers(tiny_hf_dir):
    ids = torch.randint(0, 50257, (3, 40), generator=torch.Generator().manual_seed(1))
    ref = hf_logits(tiny_hf_dir, ids)
    ours = our_logits(tiny_hf_dir, ids)
    assert ours.shape == (3, 40, 50257)
    assert (ours - ref).abs().max().item() < 1e-4
    # The comparison is not vacuous: logits vary a lot between tokens.
    assert ref.std().item() > 0.1


def test_prefixless_names_load_identically(tiny_hf_dir, tmp_path):
    tensors = load_file(tiny_hf_dir / "model.safetensors")
    assert any(k.startswith("transformer.") for k in tensors)
    stripped = {k.removeprefix("transformer."): v for k, v in tensors.items()}
    shutil.copy(tiny_hf_dir / "config.json", tmp_path / "config.json")
    save_file(stripped, tmp_path / "model.safetensors")
    ids = torch.randint(0, 50257, (2, 17), generator=torch.Generator().manual_seed(2))
    assert torch.equal(our_logits(tmp_path, ids), our_logits(tiny_hf_dir, ids))


def test_gpt2model_export_without_prefix_matches(tiny_hf_dir, tmp_path):
    """transformers' GPT2Model (no LM head) saves names without `transformer.`."""
    import transformers

    lm = transformers.GPT2LMHeadModel.from_pretrained(tiny_hf_dir)
    lm.transformer.save_pretrained(tmp_path)
    names = load_file(tmp_path / "model.safetensors").keys()
    assert "h.0.attn.c_attn.weight" in names
    ids = torch.randint(0, 50257, (1, 9), generator=torch.Generator().manual_seed(3))
    assert (our_logits(tmp_path, ids) - hf_logits(tiny_hf_dir, ids)).abs().max() < 1e-4


def test_attention_buffers_are_ignored_and_bin_loads(tiny_hf_dir, tmp_path):
    tensors = load_file(tiny_hf_dir / "model.safetensors")
    tensors["transformer.h.0.attn.bias"] = torch.ones(1, 1, 64, 64).tril()
    tensors["transformer.h.1.attn.masked_bias"] = torch.tensor(-1e4)
    shutil.copy(tiny_hf_dir / "config.json", tmp_path / "config.json")
    torch.save(tensors, tmp_path / "pytorch_model.bin")
    ids = torch.randint(0, 50257, (1, 12), generator=torch.Generator().manual_seed(5))
    assert torch.equal(our_logits(tmp_path, ids), our_logits(tiny_hf_dir, ids))


def test_real_gpt2_size_matches_transformers(tmp_path):
    """The full 124M shape (12 layers, 768 wide, 1024 context) through the same path."""
    import transformers

    torch.manual_seed(0)
    cfg = transformers.GPT2Config()  # defaults are GPT-2 small
    model = transformers.GPT2LMHeadModel(cfg).eval()
    model.save_pretrained(tmp_path)
    ids = torch.randint(0, 50257, (2, 24), generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        ref = model(ids).logits
    ours = load_pretrained(tmp_path).eval()
    assert ours.config.emb_dim == 768 and ours.config.n_layers == 12
    assert ours.config.context_length == 1024
    assert ours.num_parameters() == 124_439_808
    with torch.no_grad():
        out = ours(ids)
    assert (out - ref).abs().max().item() < 1e-4


# ---- strict mapping errors -------------------------------------------------------------


def _copy_with(tiny_hf_dir: Path, dest: Path, edit) -> Path:
    tensors = load_file(tiny_hf_dir / "model.safetensors")
    edit(tensors)
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(tiny_hf_dir / "config.json", dest / "config.json")
    save_file(tensors, dest / "model.safetensors")
    return dest


def test_missing_tensor_is_named(tiny_hf_dir, tmp_path):
    d = _copy_with(tiny_hf_dir, tmp_path, lambda t: t.pop("transformer.h.1.mlp.c_fc.bias"))
    with pytest.raises(GPTClassifyError, match=r"missing tensor\(s\) h\.1\.mlp\.c_fc\.bias"):
        load_pretrained(d)


def test_wrong_shape_names_tensor_and_both_shapes(tiny_hf_dir, tmp_path):
    def edit(t):
        t["transformer.h.0.attn.c_attn.weight"] = torch.zeros(32, 95)

    d = _copy_with(tiny_hf_dir, tmp_path, edit)
    with pytest.raises(GPTClassifyError) as err:
        load_pretrained(d)
    msg = str(err.value)
    assert "transformer.h.0.attn.c_attn.weight" in msg
    assert "(32, 95)" in msg and "(32, 96)" in msg


def test_unknown_tensor_rejected(tiny_hf_dir, tmp_path):
    def edit(t):
        t["transformer.h.0.attn.rotary.weight"] = torch.zeros(3)

    d = _copy_with(tiny_hf_dir, tmp_path, edit)
    with pytest.raises(
        GPTClassifyError, match=r"unexpected tensor\(s\) transformer\.h\.0\.attn\.rotary"
    ):
        load_pretrained(d)


def test_missing_directory(tmp_path):
    with pytest.raises(GPTClassifyError, match="model directory not found"):
        load_pretrained(tmp_path / "nope")


def test_unsupported_config_is_refused(tiny_hf_dir, tmp_path):
    shutil.copytree(tiny_hf_dir, tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    cfg["activation_function"] = "relu"
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(GPTClassifyError, match="activation_function='relu' is not supported"):
        load_pretrained(tmp_path / "m")


def test_pickle_code_in_bin_is_never_run(tiny_hf_dir, tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    shutil.copy(tiny_hf_dir / "config.json", tmp_path / "config.json")
    torch.save({"x": Evil()}, tmp_path / "pytorch_model.bin")
    with pytest.raises(GPTClassifyError, match="refused to load"):
        load_pretrained(tmp_path)
    assert not (tmp_path / "pwned").exists()


# ---- the Hugging Face Hub path, against a stand-in on 127.0.0.1 ------------------------

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class _HubHandler(SimpleHTTPRequestHandler):
    """Answers /{org}/{repo}/resolve/{rev}/{file} like the Hub does for small, non-xet files."""

    files: dict[str, bytes] = {}
    requests: list[str] = []

    def _lookup(self):
        self.requests.append(f"{self.command} {self.path}")
        parts = self.path.split("?")[0].strip("/").split("/")
        if len(parts) == 5 and parts[2] == "resolve":
            key = f"{parts[0]}/{parts[1]}/{parts[4]}"
            if key in self.files:
                return self.files[key]
        self.send_response(404)
        self.send_header("X-Error-Code", "EntryNotFound")
        self.end_headers()
        return None

    def _headers(self, body: bytes):
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", '"' + hashlib.sha256(body).hexdigest() + '"')
        self.send_header("X-Repo-Commit", COMMIT)
        self.end_headers()

    def do_HEAD(self):  # noqa: N802
        body = self._lookup()
        if body is not None:
            self._headers(body)

    def do_GET(self):  # noqa: N802
        body = self._lookup()
        if body is not None:
            self._headers(body)
            self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_hub(tiny_hf_dir):
    _HubHandler.files = {
        f"openai-community/gpt2/{name}": (tiny_hf_dir / name).read_bytes()
        for name in ("config.json", "model.safetensors")
    }
    _HubHandler.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_HubHandler))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _cli(args, env_extra, tmp_path):
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf_home"), **env_extra}
    env.pop("HF_HUB_OFFLINE", None) if "HF_HUB_OFFLINE" not in env_extra else None
    return subprocess.run(
        [sys.executable, "-m", "gptclassify", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_hub_download_then_offline_cache(fake_hub, tiny_hf_dir, tmp_path):
    from gptclassify.generation import generate_text

    args = [
        "generate",
        "--model",
        "gpt2",
        "--prompt",
        "Every effort moves you",
        "--max-new-tokens",
        "8",
        "--device",
        "cpu",
    ]
    first = _cli(args, {"HF_ENDPOINT": fake_hub}, tmp_path)
    assert first.returncode == 0, first.stderr
    assert any("model.safetensors" in r for r in _HubHandler.requests)
    cached = list(
        (tmp_path / "hf_home" / "hub").glob(
            "models--openai-community--gpt2/snapshots/*/model.safetensors"
        )
    )
    assert len(cached) == 1
    expected = generate_text(load_pretrained(tiny_hf_dir), "Every effort moves you", 8)
    assert first.stdout.strip() == expected.strip()

    # Offline mode must reuse the cache and never contact the server.
    _HubHandler.requests.clear()
    second = _cli(args, {"HF_ENDPOINT": fake_hub, "HF_HUB_OFFLINE": "1"}, tmp_path)
    assert second.returncode == 0, second.stderr
    assert second.stdout == first.stdout
    assert _HubHandler.requests == []


def test_unreachable_hub_gives_one_clear_error(tmp_path):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    res = _cli(
        ["generate", "--model", "gpt2", "--prompt", "hi"],
        {"HF_ENDPOINT": f"http://127.0.0.1:{port}", "HF_HUB_ETAG_TIMEOUT": "2"},
        tmp_path,
    )
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    # huggingface_hub logs its own retry attempts first (as Hub users expect); then exactly
    # one error line, the last one, saying what to do.
    errors = [line for line in res.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, res.stderr
    assert res.stderr.strip().splitlines()[-1] == errors[0]
    assert "could not get 'gpt2' from the Hugging Face Hub" in errors[0]
    assert "--model DIR" in errors[0]


def test_offline_without_cache_gives_one_clear_error(tmp_path):
    res = _cli(
        ["generate", "--model", "gpt2-medium", "--prompt", "hi"], {"HF_HUB_OFFLINE": "1"}, tmp_path
    )
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    assert "could not get 'gpt2-medium'" in res.stderr and "--model DIR" in res.stderr
