"""Many processes (torchrun): the process group, gradient all-reduce, synchronised batch norm.

``torchrun --nproc-per-node N -m facegan train ...`` starts N copies of the ordinary command;
each reads its place from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK) through
:func:`init_from_env`. Outside torchrun (or with WORLD_SIZE=1) everything here is a no-op, so
the trainer has one code path.

How a step is shared (the choices, and why):

* The config's batch size is the *global* batch. Every rank draws the same global random
  numbers (batch indices and flips, noise, generator labels, augmentation parameters, the
  penalty's mixing weights: all from streams seeded identically on every rank) and keeps its
  own contiguous share, ``rank * B/N : (rank + 1) * B/N``. So the images and noise seen per
  step do not depend on N, a run is reproducible for a seed, and it resumes exactly on another
  process count; each rank still sees different images and noise from the others.
* Gradients are averaged by an explicit all-reduce of one flat buffer per network after the
  backward pass (as stylegan3's training loop does; stylegan2-ada-pytorch uses DDP), not by
  DistributedDataParallel: the critic is called several times per step and the gradient
  penalty's double backward does not go through DDP's reducer hooks cleanly. Each rank's loss
  is a mean over its share, so the mean of the ranks' gradients is the gradient of the
  global-batch loss.
* Batch norm statistics are synchronised across ranks (``train.sync_bn``, default on):
  PyTorch's ``SyncBatchNorm`` on GPUs, and :class:`CPUSyncBatchNorm` on CPUs, which PyTorch's
  does not support (it raises for CPU tensors): it sums per-channel moments with the
  differentiable all-reduce (:class:`AllReduceSum`), so gradients flow through the global
  statistics exactly as through one big batch.
* Control decisions (a stop signal on any rank, the time budget) are all-reduced every step
  over a gloo group of CPU tensors, so all ranks stop at the same step without making a GPU
  wait; losses are all-reduced when they are read (once per log window), so a NaN on any rank
  stops every rank at the same check.

Ending: :func:`shutdown` must run on every way out of a started process (success, UserError,
signal, crash), and it has to *free* the process groups, not only deregister them. A gloo
group still alive at interpreter exit keeps its worker threads; one that then drops the last
reference to a collective's tensor needs the GIL, which a finalizing interpreter answers by
ending the thread, and that unwind through a C++ destructor calls std::terminate ("terminate
called without an active exception", SIGABRT). See :func:`_bind_world_defaults`.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from ..errors import UserError

T = TypeVar("T")

# Rank 0 evaluates (FID) while the others wait at their next collective; give that room.
TIMEOUT = datetime.timedelta(minutes=60)


@dataclass
class DistEnv:
    """Where this process stands: rank r of world_size, local_rank on its machine.

    The single-process default makes every method a no-op.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    control_group: Any = field(default=None, repr=False)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # ---- shares of the global batch ---------------------------------------------------------

    def local_size(self, global_size: int) -> int:
        return global_size // self.world_size

    def share(self, t: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous share of a global-batch tensor (dim 0 divisible by N)."""
        if not self.enabled:
            return t
        n = t.shape[0] // self.world_size
        return t[self.rank * n:(self.rank + 1) * n]

    # ---- collectives ------------------------------------------------------------------------

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier(group=self.control_group)

    def any_flags(self, *flags: bool) -> list[bool]:
        """Each flag True on any rank -> True on every rank (one small CPU all-reduce)."""
        return [v > 0 for v in self.max_over_ranks(*(1.0 if f else 0.0 for f in flags))]

    def max_over_ranks(self, *values: float) -> list[float]:
        """Each value's maximum over ranks, on every rank (one small CPU all-reduce)."""
        if not self.enabled:
            return [float(v) for v in values]
        t = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(t, op=dist.ReduceOp.MAX, group=self.control_group)
        return t.tolist()

    def mean(self, t: torch.Tensor) -> torch.Tensor:
        """The mean over ranks of a tensor (NaN anywhere -> NaN everywhere)."""
        if not self.enabled:
            return t
        t = t.clone()
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t / self.world_size

    def sync_grads(self, module: nn.Module) -> None:
        """Average the gradients of ``module``'s trainable parameters over ranks, in one
        all-reduce of a flat buffer (a missing gradient counts as zero on that rank).

        A parameter that no rank used this step (a progressive-growing head off its level, a
        stage not yet faded in) keeps ``grad None``, as in one process: an optimizer skips such
        a parameter, while a zero gradient would count as a step (Adam's step count and second
        moment), and the runs would part at the first step that uses it. The flags of which
        parameters have a gradient travel at the end of the same buffer."""
        if not self.enabled:
            return
        params = [p for p in module.parameters() if p.requires_grad]
        if not params:
            return
        present = [p.grad is not None for p in params]
        has = torch.tensor(present, dtype=params[0].dtype, device=params[0].device)
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                          for p in params] + [has])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        grads = flat[:-len(params)]
        grads /= self.world_size
        # The flags are read (a host sync on a GPU) only when this rank missed a gradient: with
        # all of its own present, every parameter has one.
        used = [1.0] * len(params) if all(present) else flat[-len(params):].tolist()
        # Each gradient goes back in its parameter's memory layout: a channels_last weight keeps
        # a channels_last gradient (a view of the flat buffer would be contiguous, and CUDA's
        # fused Adam refuses parameters and gradients of different strides).
        for p, g, u in zip(params, grads.split([p.numel() for p in params]), used):
            if u <= 0:
                p.grad = None
            elif p.grad is not None and p.grad.stride() == p.stride():
                p.grad.copy_(g.view_as(p))
            else:
                p.grad = torch.empty_like(p).copy_(g.view_as(p))

    def broadcast_module(self, module: nn.Module) -> None:
        """Rank 0's parameters and buffers on every rank (they start equal from the seed; this
        makes sure, as DDP does at construction)."""
        if not self.enabled:
            return
        with torch.no_grad():
            for t in list(module.parameters()) + list(module.buffers()):
                dist.broadcast(t.data, src=0)

    def agree(self, fn: Callable[[], T], *, main_only: bool = False) -> T | None:
        """Run ``fn`` (on rank 0 alone if ``main_only``) and fail on every rank if it failed on
        any, so no rank waits forever at the next collective for one that has left. Rank 0's
        error is re-raised as itself; the others raise a UserError that points at rank 0's."""
        if not self.enabled:
            return fn()
        result, error = None, None
        if self.is_main or not main_only:
            try:
                result = fn()
            except BaseException as e:
                error = e
        failed, main_failed = self.any_flags(error is not None, self.is_main and error is not None)
        if error is not None:
            if not self.is_main and not main_failed:
                error.rank_only = True  # rank 0 did not meet it: this rank must say it (cli.main)
            raise error
        if failed:
            raise UserError("another process of this run failed (its message is above); "
                            "fix that and start again") from None
        return result


def init_from_env(device: str = "auto") -> DistEnv:
    """The DistEnv of this process: from torchrun's RANK / WORLD_SIZE / LOCAL_RANK, with the
    process group started (NCCL for CUDA, gloo for CPU); single-process outside torchrun.

    device: the run's ``train.device``; 'auto' and 'cuda' pick ``cuda:LOCAL_RANK`` when CUDA
    is available.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistEnv()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_available():
        raise UserError("this PyTorch build has no torch.distributed; run without torchrun")
    cuda = uses_cuda(device)
    if cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        _bind_world_defaults()
        kw = {"device_id": torch.device("cuda", local_rank)} if cuda else {}
        dist.init_process_group("nccl" if cuda else "gloo", timeout=TIMEOUT, **kw)
    # Control messages go over gloo with CPU tensors, so checking them never waits on a GPU.
    group = dist.new_group(backend="gloo", timeout=TIMEOUT) if cuda else None
    return DistEnv(rank=rank, world_size=world, local_rank=local_rank, control_group=group)


def uses_cuda(device: str) -> bool:
    """True when ``train.device`` means a GPU that is there (a missing one is refused later,
    with its own message, by ``sampling.pick_device``)."""
    return torch.cuda.is_available() and (device.startswith("cuda") or device == "auto")


def process_device(env: DistEnv, device: str) -> str:
    """The device string for this rank: 'cuda:LOCAL_RANK' for a CUDA run under torchrun (one
    GPU per process; 'cuda:N' is refused there), else ``device`` unchanged."""
    if not env.enabled or not uses_cuda(device):
        return device
    if device not in ("auto", "cuda"):
        raise UserError(f"train.device={device} under torchrun: each process takes the GPU of its "
                        "LOCAL_RANK; use train.device=cuda (or auto), and CUDA_VISIBLE_DEVICES to "
                        "choose the GPUs")
    return f"cuda:{env.local_rank}"


def _bind_world_defaults() -> None:
    """Import, before the default process group exists, the torch modules whose functions take
    ``group=group.WORLD`` as a default argument.

    Such a default is evaluated once, at import: imported after ``init_process_group`` it is
    the live default group, held by the module for the life of the process, so
    ``destroy_process_group`` deregisters that group but cannot free it. The first optimizer
    built imports one of them lazily (torch.optim -> torch._dynamo -> torch.distributed.fsdp ->
    ... -> torch.distributed.nn.functional). Imported here, the default is None (which the
    functions read as "the default group").
    """
    import torch.distributed.nn  # noqa: F401  (functional: broadcast, all_reduce, ...)


def shutdown(env: DistEnv) -> None:
    """Leave the job: destroy every process group (the default one and the control group),
    which joins their gloo worker threads while the interpreter is still whole. Safe to call
    more than once; a no-op for a single process."""
    if env.enabled and dist.is_initialized():
        dist.destroy_process_group()  # all groups, subgroups first
    # The control group's last reference: with it held here, it (and its threads) would live
    # until interpreter exit.
    env.control_group = None


# --------------------------------------------------------------------------------------------
# Synchronised batch norm.

class AllReduceSum(torch.autograd.Function):
    """Differentiable sum over ranks: y = sum_r x_r on every rank; the gradient of x_r is the
    sum over ranks of dL/dy (each rank's loss depends on y). Its backward is itself, so a
    double backward (gradient penalty) goes through it too."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        y = x.clone()
        dist.all_reduce(y, op=dist.ReduceOp.SUM)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return AllReduceSum.apply(grad.contiguous())


class CPUSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm whose training statistics are over the whole global batch (all ranks), for
    CPU tensors (PyTorch's ``SyncBatchNorm`` accepts GPU tensors only).

    forward(x): x (N, C, ...) -> same shape. In training mode, the per-channel sum and sum of
    squares are all-reduced with the differentiable ``all_reduce``, so the backward pass (and
    a double backward) sees the same function as batch norm over the concatenated batch.
    (Written here because PyTorch's SyncBatchNorm refuses CPU tensors, and its differentiable
    all-reduce, torch.distributed.nn.functional, is deprecated.) In
    eval mode, or without a process group, it is plain batch norm with running statistics.
    Same parameters and buffers as ``nn.BatchNorm2d``, so checkpoints do not change.
    """

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {x.dim()}D input)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized()
                and dist.get_world_size() > 1):
            return super().forward(x)
        dims = [0] + list(range(2, x.dim()))
        xf = x.float()
        count = torch.tensor([float(x.numel() // x.shape[1])], dtype=torch.float32)
        moments = torch.cat([xf.sum(dims), (xf * xf).sum(dims), count])
        moments = AllReduceSum.apply(moments)
        c = x.shape[1]
        n = moments[2 * c]
        mean = moments[:c] / n
        var = (moments[c:2 * c] / n - mean * mean).clamp_min(0.0)
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                unbiased = var.detach() * (n / (n - 1).clamp_min(1.0))
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), m)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), m)
        shape = [1, c] + [1] * (x.dim() - 2)
        y = (xf - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def convert_sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Every batch norm in ``module`` synchronised across ranks: ``nn.SyncBatchNorm`` on CUDA,
    :class:`CPUSyncBatchNorm` elsewhere. Parameters and buffers are kept (same state dict)."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return _convert_cpu(module)


def _convert_cpu(module: nn.Module) -> nn.Module:
    out = module
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, CPUSyncBatchNorm):
        out = CPUSyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                               module.track_running_stats)
        with torch.no_grad():
            if module.affine:
                out.weight.copy_(module.weight)
                out.bias.copy_(module.bias)
            if module.track_running_stats:
                out.running_mean.copy_(module.running_mean)
                out.running_var.copy_(module.running_var)
                out.num_batches_tracked.copy_(module.num_batches_tracked)
        out.train(module.training)
        out.to(next(iter(module.buffers()), torch.empty(0)).device)
    for name, child in module.named_children():
        out.add_module(name, _convert_cpu(child))
    return out
