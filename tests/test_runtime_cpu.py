"""What the runtime makes of the CPU it runs on: the threads it may really use (affinity and
cgroup quotas, read from fake /proc and /sys trees) and whether bf16 pays (decided by what a
matmul measurably does, not by a flag)."""

from __future__ import annotations

import os

import pytest
import torch

from gptclassify import runtime


def _tree(tmp_path, proc: str, files: dict[str, str]):
    (tmp_path / "cgroup").write_text(proc)
    root = tmp_path / "sys"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return tmp_path / "cgroup", root


@pytest.mark.parametrize(
    ("proc", "files", "want"),
    [
        # cgroup v2: a container's --cpus 1.5
        ("0::/docker/abc\n", {"docker/abc/cpu.max": "150000 100000\n"}, 1.5),
        # v2, no limit on the group, a smaller one on its parent
        (
            "0::/a/b\n",
            {"a/b/cpu.max": "max 100000\n", "a/cpu.max": "200000 100000\n"},
            2.0,
        ),
        ("0::/a\n", {"a/cpu.max": "max 100000\n"}, None),
        # v1 (cpu,cpuacct hierarchy), as on older Docker and many CI runners
        (
            "4:memory:/x\n3:cpu,cpuacct:/x\n",
            {
                "cpu,cpuacct/x/cpu.cfs_quota_us": "300000\n",
                "cpu,cpuacct/x/cpu.cfs_period_us": "100000\n",
            },
            3.0,
        ),
        (
            "3:cpu,cpuacct:/\n",
            {"cpu,cpuacct/cpu.cfs_quota_us": "-1\n", "cpu,cpuacct/cpu.cfs_period_us": "100000\n"},
            None,
        ),
        # v2 mounted beside v1 (hybrid: the unified hierarchy under unified/)
        ("1:cpu:/\n0::/job\n", {"unified/job/cpu.max": "50000 100000\n"}, 0.5),
        ("", {}, None),
    ],
)
def test_cgroup_cpu_limit_reads_v1_and_v2(tmp_path, proc, files, want):
    proc_path, root = _tree(tmp_path, proc, files)
    assert runtime.cgroup_cpu_limit(proc_path, root) == want


def test_cgroup_cpu_limit_without_proc_is_none(tmp_path):
    assert runtime.cgroup_cpu_limit(tmp_path / "missing", tmp_path) is None


@pytest.mark.parametrize(("quota", "want"), [(None, 2), (0.5, 1), (1.5, 1), (2.0, 2), (8.0, 2)])
def test_usable_cpus_is_the_affinity_capped_by_the_quota(monkeypatch, quota, want):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(runtime, "cgroup_cpu_limit", lambda: quota)
    assert runtime.usable_cpus() == want


def test_usable_cpus_here_is_at_most_what_this_process_may_run_on():
    assert 1 <= runtime.usable_cpus() <= len(os.sched_getaffinity(0))


@pytest.fixture
def fresh_bf16_check():
    runtime.cpu_has_fast_bf16.cache_clear()
    yield
    runtime.cpu_has_fast_bf16.cache_clear()


@pytest.mark.parametrize(
    ("onednn", "amx", "speedup", "want"),
    [
        (False, False, 9.0, torch.float32),  # no bf16 kernels at all (this AVX2 EPYC)
        (True, True, 0.1, torch.bfloat16),  # AMX: measured 2-4x on the Xeon, not re-measured
        (True, False, 0.4, torch.float32),  # emulated or slow bf16: measured slower
        (True, False, 1.1, torch.float32),  # a little faster is not worth bf16's rounding
        (True, False, 1.6, torch.bfloat16),  # AVX512-BF16 that measurably pays
    ],
)
def test_precision_auto_follows_what_the_cpu_measurably_does(
    monkeypatch, fresh_bf16_check, onednn, amx, speedup, want
):
    monkeypatch.setattr(runtime, "_onednn_bf16", lambda: onednn)
    monkeypatch.setattr(runtime, "_cpu_has_amx", lambda: amx)
    monkeypatch.setattr(runtime, "cached_bf16_speedup", lambda: speedup)
    assert runtime.resolve_precision("auto", torch.device("cpu")) == want
    # explicit choices are kept whatever the CPU
    assert runtime.resolve_precision("bf16", torch.device("cpu")) == torch.bfloat16
    assert runtime.resolve_precision("fp32", torch.device("cpu")) == torch.float32


def test_bf16_speedup_is_measured_once_per_machine(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(runtime, "bf16_speedup", lambda: calls.append(1) or 0.37)
    assert runtime.cached_bf16_speedup(tmp_path) == 0.37
    assert runtime.cached_bf16_speedup(tmp_path) == 0.37
    assert len(calls) == 1 and (tmp_path / "cpu-bf16.json").is_file()
    (tmp_path / "cpu-bf16.json").write_text("not json")  # a damaged cache is measured again
    assert runtime.cached_bf16_speedup(tmp_path) == 0.37 and len(calls) == 2


@pytest.mark.parametrize(
    ("cap", "allows"),
    [
        (None, True),
        ("ALL", True),
        ("avx512_core_amx", True),
        ("AVX512_CORE_BF16", False),
        ("AVX2", False),
    ],
)
def test_an_isa_cap_below_amx_makes_auto_measure(monkeypatch, fresh_bf16_check, cap, allows):
    """An AMX Xeon run as an AVX-512 CPU (ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16) is measured
    like one, and that measurement is cached apart from the uncapped one."""
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    if cap is None:
        monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    else:
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    monkeypatch.setattr(runtime.torch_private, "cpu_has_amx", lambda: True)
    assert runtime._cpu_has_amx() is allows
    monkeypatch.setattr(runtime, "_onednn_bf16", lambda: True)
    monkeypatch.setattr(runtime, "cached_bf16_speedup", lambda: 0.6)
    want = torch.bfloat16 if allows else torch.float32
    assert runtime.resolve_precision("auto", torch.device("cpu")) == want


def test_the_bf16_measurement_is_kept_per_isa_cap(tmp_path, monkeypatch):
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.setattr(runtime, "bf16_speedup", lambda: 3.0)
    assert runtime.cached_bf16_speedup(tmp_path) == 3.0
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16")
    monkeypatch.setattr(runtime, "bf16_speedup", lambda: 0.6)
    assert runtime.cached_bf16_speedup(tmp_path) == 0.6
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    assert runtime.cached_bf16_speedup(tmp_path) == 3.0


def test_bf16_speedup_measures_a_real_matmul():
    ratio = runtime.bf16_speedup(rows=8, repeats=1)
    assert 0 < ratio < float("inf")


def test_cap_threads_lowers_torch_threads_to_the_quota_unless_omp_num_threads(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        monkeypatch.setattr(runtime, "usable_cpus", lambda: 1)
        torch.set_num_threads(2)
        assert runtime.cap_threads.__wrapped__() == 1 == torch.get_num_threads()
        torch.set_num_threads(2)
        monkeypatch.setenv("OMP_NUM_THREADS", "2")  # the user's count is kept
        assert runtime.cap_threads.__wrapped__() == 2
        monkeypatch.delenv("OMP_NUM_THREADS")
        monkeypatch.setattr(runtime, "usable_cpus", lambda: 64)
        assert runtime.cap_threads.__wrapped__() == 2  # never raised above torch's default
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize(
    ("given", "want"), [({}, None), ({"OMP_WAIT_POLICY": "ACTIVE"}, ("ACTIVE", None))]
)
def test_the_cli_sets_how_openmp_threads_wait_before_torch_loads(given, want):
    """Set before torch loads OpenMP (which reads it once), unless the user set it."""
    import subprocess
    import sys

    from gptclassify.cli.app import machine_load, openmp_wait_settings

    names = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
    env = {k: v for k, v in os.environ.items() if k not in names} | given
    code = (
        "import os, sys\n"
        "from gptclassify.cli.app import main\n"
        "assert 'torch' not in sys.modules\n"
        "try:\n    main(['--version'])\nexcept SystemExit:\n    pass\n"
        f"print([os.environ.get(n) for n in {names!r}])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    got = tuple(eval(done.stdout.strip().splitlines()[-1]))  # a printed list of two
    if want is None:  # one of the two, as this machine's load decides
        assert got in {("PASSIVE", None), (None, "10000")}
        others, cpus = machine_load(window_s=0.0, min_reads=2)
        assert cpus >= 1 and others >= 0
    else:
        assert got == want
    assert openmp_wait_settings(given, 0, 2) == ({} if given else {"GOMP_SPINCOUNT": "10000"})


@pytest.mark.parametrize(
    ("others", "cpus", "want"),
    [
        (0, 2, {"GOMP_SPINCOUNT": "10000"}),  # idle (a job that just ended included): spin
        (12, 2, {"OMP_WAIT_POLICY": "PASSIVE"}),  # the busy machine (load 12-15)
        (1, 2, {"OMP_WAIT_POLICY": "PASSIVE"}),  # one other job (or one started with us)
        (1, 1, {"OMP_WAIT_POLICY": "PASSIVE"}),
        (3, 64, {"GOMP_SPINCOUNT": "10000"}),  # a big machine, mostly free
        (40, 64, {"OMP_WAIT_POLICY": "PASSIVE"}),
    ],
)
def test_openmp_threads_sleep_on_a_busy_machine_and_spin_briefly_on_an_idle_one(others, cpus, want):
    from gptclassify.cli.app import openmp_wait_settings

    assert openmp_wait_settings({}, others, cpus) == want
    assert openmp_wait_settings({"GOMP_SPINCOUNT": "0"}, others, cpus) == {}


def test_the_load_is_read_as_processes_runnable_now(monkeypatch, tmp_path):
    """The median of a few readings of /proc/loadavg's running count, less this process."""
    import builtins

    from gptclassify.cli import app

    readings = iter(["2.0 1.0 0.5 3/200 99\n", "0.1 0.1 0.1 1/200 99\n", "2.0 1 1 4/9 9\n"])
    real_open = builtins.open

    def fake_open(path, *a, **k):
        if path == "/proc/loadavg":
            f = tmp_path / "loadavg"
            f.write_text(next(readings))
            return real_open(f, *a, **k)
        return real_open(path, *a, **k)

    monkeypatch.setattr(builtins, "open", fake_open)
    others, cpus = app.machine_load(window_s=0.0, min_reads=3)
    assert others == 2 and cpus >= 1  # median of 2, 0, 3


def test_bf16_passes_run_on_cpus_without_onednn_bf16():
    """--precision bf16 asked explicitly on an AVX2-only CPU: oneDNN has no bf16 kernel to
    fuse the MLP into there ("could not create a primitive descriptor"); the plain path runs
    and agrees with fp32 to bf16's rounding. On CPUs with bf16 kernels this is the fused path."""
    import numpy as np

    from gptclassify.classifier import GPTClassifier
    from gptclassify.config import GPTConfig
    from gptclassify.data.encode import Encoded
    from gptclassify.model import GPTModel
    from gptclassify.predict.torch_runtime import TorchRuntime

    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=50257, context_length=64, emb_dim=64, n_heads=4, n_layers=2)
    model = GPTClassifier(GPTModel(cfg), 2)
    texts = Encoded.unlabelled([[11, 12, 13, 14, 15], [16, 17, 18]])
    bf16 = TorchRuntime(model, "cpu", "bf16").logits(texts, 8)
    fp32 = TorchRuntime(model, "cpu", "fp32").logits(texts, 8)
    assert np.abs(bf16 - fp32).max() < 0.05
