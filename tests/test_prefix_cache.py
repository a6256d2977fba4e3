"""The frozen-prefix cache kept in a memory-mapped file: the same values as in memory, the same
trained weights, removed when the run ends, and said in the log."""

from __future__ import annotations

import shutil
import signal

import torch

from gptclassify.training import train
from gptclassify.training.prefix_cache import (
    DISK_HEADROOM,
    build_prefix_source,
    plan_prefix_cache,
)
from test_resume import config, reference, run_killed
from test_resume import job as job  # noqa: F401  (the module's fixture, shared)
from test_training import make_model, run_fit, sources


def test_disk_cache_equals_the_memory_cache_bit_for_bit(tmp_path):
    train_src, val_src = sources()
    model, start = make_model()
    memory = build_prefix_source(model, train_src, start)
    disk = build_prefix_source(model, train_src, start, disk_path=tmp_path / "c" / "train.f32")
    assert disk.disk is not None and (tmp_path / "c" / "train.f32").stat().st_size == (
        memory.states.numel() * 4
    )
    assert disk.states.dtype == memory.states.dtype == torch.float32
    assert torch.equal(disk.states, memory.states)
    idx = torch.tensor([5, 0, 17, 3])
    a, b = memory.batch(idx), disk.batch(idx)
    assert torch.equal(a.args[0], b.args[0]) and torch.equal(a.lengths, b.lengths)
    disk.close()
    assert not (tmp_path / "c" / "train.f32").exists()


def test_training_on_the_disk_cache_gives_the_same_weights_bit_for_bit(tmp_path):
    train_src, val_src = sources()
    plain, start = make_model()
    on_disk, _ = make_model()
    _, l1 = run_fit(
        plain,
        build_prefix_source(plain, train_src, start),
        build_prefix_source(plain, val_src, start),
    )
    dtrain = build_prefix_source(on_disk, train_src, start, disk_path=tmp_path / "t.f32")
    dval = build_prefix_source(on_disk, val_src, start, disk_path=tmp_path / "v.f32")
    _, l2 = run_fit(on_disk, dtrain, dval)
    assert l1 == l2 and l1[-1] < l1[0]
    for (n, p), (_, q) in zip(plain.named_parameters(), on_disk.named_parameters(), strict=True):
        assert torch.equal(p, q), n


def test_the_plan_goes_to_disk_beyond_memory_and_off_beyond_both(tmp_path, monkeypatch):
    from gptclassify.training import prefix_cache

    gb = 10**9
    # The disk as this test needs it, whatever this machine has free (a full disk once
    # turned the 5 GB plan below into "off").
    monkeypatch.setattr(prefix_cache, "_free_bytes", lambda folder: 50 * gb)
    assert plan_prefix_cache(gb, 4.0, 100.0, tmp_path).where == "memory"
    disk = plan_prefix_cache(5 * gb, 4.0, 100.0, tmp_path / "not-yet")
    assert disk.where == "disk" and disk.folder == tmp_path / "not-yet"
    off = plan_prefix_cache(5 * gb, 4.0, 4.5, tmp_path)
    assert off.where == "off" and "--cache-disk-gb 4.5" in off.reason
    full = plan_prefix_cache(50 * gb - DISK_HEADROOM + gb, 0.0, 1e9, tmp_path)
    assert full.where == "off" and "50.00 GB free" in full.reason
    monkeypatch.undo()  # and the real free space is what the plan reads
    too_big = shutil.disk_usage(tmp_path).free - DISK_HEADROOM + gb
    full = plan_prefix_cache(too_big, 0.0, 1e9, tmp_path)
    assert full.where == "off" and "GB free" in full.reason


def test_a_run_with_the_disk_cache_matches_the_memory_run_and_removes_it(
    job, tmp_path, tmp_path_factory
):
    out = tmp_path / "run"
    scratch = tmp_path / "scratch"
    train(
        config(job, out, precision="fp32", cache_gb=0.0, prefix_cache_dir=str(scratch)),
        quiet=True,
    )
    log = (out / "train.log").read_text()
    assert "in a memory-mapped file in " + str(scratch / "gptclassify-prefix-cache-run-") in log
    assert (out / "model.safetensors").read_bytes() == reference(
        job, tmp_path_factory, precision="fp32"
    )
    assert scratch.is_dir() and not any(scratch.iterdir())  # removed at the end
    assert not any(p.name.startswith("prefix-cache") for p in out.iterdir())


def test_beyond_the_disk_budget_the_log_says_it_runs_uncached(job, tmp_path):
    out = tmp_path / "run"
    clf = train(config(job, out, epochs=1, cache_gb=0.0, cache_disk_gb=0.0), quiet=True)
    log = (out / "train.log").read_text()
    assert "Frozen-prefix cache: not used" in log and "--cache-disk-gb 0" in log
    assert clf.metrics["frozen_prefix_cache"] is False


def test_killed_with_the_disk_cache_and_resumed_equals_the_memory_run(
    job, tmp_path, tmp_path_factory
):
    out = tmp_path / "run"
    settings = {"precision": "fp32", "cache_gb": 0.0}
    assert run_killed(config(job, out, **settings), "step:10") == -signal.SIGKILL
    # A SIGKILL leaves the file in the work folder; the resumed run replaces it, then removes it.
    assert (tmp_path / "run.partial" / "prefix-cache" / "train.f32").is_file()
    train(resume=out, quiet=True)
    assert (out / "model.safetensors").read_bytes() == reference(
        job, tmp_path_factory, precision="fp32"
    )
    assert not (out / "prefix-cache").exists()
    assert "memory-mapped file" in (out / "train.log").read_text()
