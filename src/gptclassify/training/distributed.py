"""Data-parallel training with torchrun: process group, device per rank, exact reductions.

`torchrun --nproc_per_node N -m gptclassify train ...` starts N processes with RANK,
LOCAL_RANK and WORLD_SIZE set; `Dist.from_env` joins them into one process group (NCCL on
CUDA, gloo on CPU) with a collective timeout, so a rank that dies makes the others fail
instead of waiting forever. A plain `gptclassify train` is the one-process case of the same
code (`Dist.single`).

How the work is split (the optimisation path is the one-process path, whatever N is):
every rank draws the same global batch order from the shared seed and takes its own
contiguous share of each global batch (`shard`); the loss of a step is normalised by the
weight of the whole global step, so DDP's gradient average equals the one-process
gradient. Evaluations and the frozen-prefix cache are computed in shares and summed with
all_reduce into buffers where each row is written by exactly one rank: x + 0 + ... = x,
so the reduced result is exact.
"""

from __future__ import annotations

import datetime
import gc
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from gptclassify.errors import GPTClassifyError
from gptclassify.runtime import resolve_device

TIMEOUT_ENV = "GPTCLASSIFY_DIST_TIMEOUT_S"
"""Seconds a collective waits for the other ranks before failing (default 600)."""


@dataclass(frozen=True)
class Dist:
    world_size: int = 1
    rank: int = 0
    local_rank: int = 0
    backend: str | None = None
    """nccl or gloo under torchrun; None for a single process."""

    @property
    def is_main(self) -> bool:
        """The process that writes files and logs."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @classmethod
    def single(cls) -> Dist:
        return cls()

    @classmethod
    def from_env(cls, device: str) -> tuple[Dist, torch.device]:
        """The process group torchrun describes (WORLD_SIZE > 1), and this rank's device;
        a single process otherwise."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls.single(), resolve_device(device)
        rank = int(os.environ["RANK"])
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        target = resolve_device(device)
        if target.type == "cuda":
            if local_rank >= torch.cuda.device_count():
                raise GPTClassifyError(
                    f"LOCAL_RANK {local_rank}: this machine has {torch.cuda.device_count()} "
                    "GPU(s); start at most that many processes per node (--nproc_per_node)"
                )
            target = torch.device("cuda", local_rank)
            torch.cuda.set_device(target)
            backend = "nccl"
        elif target.type == "cpu":
            backend = "gloo"
        else:
            raise GPTClassifyError(f"--device {device}: torchrun runs use cuda or cpu")
        if not dist.is_initialized():
            timeout = datetime.timedelta(seconds=float(os.environ.get(TIMEOUT_ENV, "600")))
            dist.init_process_group(backend=backend, timeout=timeout)
        return cls(world, rank, local_rank, backend), target

    # ---- splitting work ---------------------------------------------------------------

    def shard(self, idx: Tensor) -> Tensor:
        """This rank's contiguous share of a global batch (sizes differ by at most one)."""
        if not self.active:
            return idx
        return idx.tensor_split(self.world_size)[self.rank]

    def rows(self, n: int) -> Tensor:
        """This rank's share of rows 0..n-1 (for evaluations and the prefix cache)."""
        return self.shard(torch.arange(n))

    # ---- reductions -------------------------------------------------------------------

    def sum(self, tensor: Tensor) -> Tensor:
        """all_reduce(SUM) in place (on the process group's device), returned."""
        if self.active:
            device = tensor.device
            work = tensor if self.backend != "nccl" else tensor.cuda()
            dist.all_reduce(work, op=dist.ReduceOp.SUM)
            if work is not tensor:
                tensor.copy_(work.to(device))
        return tensor

    def sum_floats(self, *values: float) -> list[float]:
        """Several Python numbers summed over ranks, in float64."""
        if not self.active:
            return list(values)
        device = torch.device("cuda") if self.backend == "nccl" else torch.device("cpu")
        return self.sum(torch.tensor(values, dtype=torch.float64, device=device)).tolist()

    def broadcast_text(self, text: str | None) -> str:
        """Rank 0's text on every rank (e.g. the run folder it claimed)."""
        if not self.active:
            return text or ""
        device = torch.device("cuda") if self.backend == "nccl" else torch.device("cpu")
        data = (text or "").encode() if self.is_main else b""
        size = torch.tensor([len(data)], dtype=torch.long, device=device)
        dist.broadcast(size, src=0)
        buffer = torch.zeros(int(size), dtype=torch.uint8, device=device)
        if self.is_main:
            buffer.copy_(torch.frombuffer(bytearray(data), dtype=torch.uint8))
        dist.broadcast(buffer, src=0)
        return bytes(buffer.cpu().tolist()).decode()

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def wrap(self, net: nn.Module, device: torch.device) -> nn.Module:
        """DistributedDataParallel around the module the steps call (a no-op alone)."""
        if not self.active:
            return net
        ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(net, device_ids=ids)

    def close(self, finished: bool = True) -> None:
        """Leave the process group. After a run that `finished` on this rank, every rank
        first meets at a barrier, so none shuts its connections down while a peer still
        reads the last collective from them (gloo's threads then abort the peer:
        "terminate called without an active exception"). After a failure, leave at once:
        the others fail on their next collective instead of waiting here."""
        if not (self.active and dist.is_initialized()):
            return
        if finished:
            dist.barrier()
        dist.destroy_process_group()
        # DDP's reducer keeps the group alive; free it now, while the interpreter is
        # whole, not from a garbage cycle at exit.
        gc.collect()
