"""Where and in what precision facegan computes: decided here, once, and passed down.

Every other module asks this one: :func:`resolve_device` turns ``auto`` / ``cpu`` / ``cuda`` /
``cuda:N`` into a ``torch.device``; :func:`resolve_precision` turns ``auto`` / ``fp32`` /
``bf16`` / ``fp16`` into what to autocast to on that device; :func:`autocast` gives the context;
:func:`use_fused` says whether Adam runs as one fused kernel; :func:`cpu_has_fast_bf16` reads
the CPU's flags and :func:`cpu_name` its model, for figures that name their machine. Nothing
here imports the rest of facegan (bottom layer).
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from pathlib import Path

import torch

from .errors import UserError

DEVICES = ("auto", "cpu", "cuda")  # and cuda:N
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
FUSED = ("auto", "on", "off")

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """``'auto'`` (or None): the first CUDA GPU if there is one, else the CPU. ``'cpu'``,
    ``'cuda'``, ``'cuda:N'`` or such a torch.device: that device; UserError when it does not
    exist here."""
    # A torch.device is checked as its text is: torch.device("cuda") exists on any machine.
    text = "auto" if name is None else str(name).strip()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(text)
    except RuntimeError:
        raise UserError(f"unknown device '{text}'; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"device '{text}' asked for but no CUDA GPU is available; use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UserError(f"device '{text}' asked for but this machine has "
                            f"{torch.cuda.device_count()} GPU(s); use cuda:0 .. "
                            f"cuda:{torch.cuda.device_count() - 1}")
    elif dev.type != "cpu":
        raise UserError(f"unsupported device '{text}'; use auto, cpu, cuda or cuda:N")
    return dev


@functools.cache
def _cpuinfo() -> str:
    """The text of /proc/cpuinfo (Linux); '' where there is none."""
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_has_fast_bf16() -> bool:
    """True when the CPU has native bf16 dot products (AVX-512 BF16 or AMX), where oneDNN's
    bf16 convolutions beat fp32; elsewhere bf16 is emulated and slower."""
    flags = _cpuinfo()
    return "avx512_bf16" in flags or "amx_bf16" in flags


def has_fast_bf16(device: str | torch.device) -> bool:
    """Whether ``device`` computes bf16 natively (a recent GPU, or a CPU with AVX-512 BF16/AMX)."""
    device = torch.device(device)
    if device.type == "cuda":
        # Compute capability 8.0 (Ampere) and later have bf16 tensor cores; is_bf16_supported()
        # also says yes for older cards, which only emulate it (slower than their fp16).
        return torch.cuda.get_device_capability(device) >= (8, 0)
    if device.type == "cpu":
        return cpu_has_fast_bf16()
    return False


def resolve_precision(precision: str, device: str | torch.device, *, warn: bool = True) -> str:
    """The autocast precision to compute in: 'fp32' (none), 'bf16' or 'fp16' (training adds a
    gradient scaler). 'auto': bf16 where the device computes it natively (recent GPUs; CPUs with
    AVX-512 BF16 or AMX), else fp16 on a GPU (older cards: tensor cores need a half type) and
    fp32 on a CPU (emulated bf16 is slower than fp32). 'bf16' asked for on a CPU without native
    bf16 is kept, with one warning (``warn``) that it is slower there than fp32. ``device``: a
    torch.device, or a name as :func:`resolve_device` takes ('auto', 'cpu', 'cuda', 'cuda:N')."""
    if isinstance(device, str):
        device = resolve_device(device)
    if precision not in PRECISIONS:
        raise UserError(f"unknown precision '{precision}'; use one of {', '.join(PRECISIONS)}")
    if precision in ("fp32", "fp16"):
        return precision
    ok = has_fast_bf16(device)
    if precision == "bf16":
        if not ok and device.type == "cuda":
            raise UserError("precision=bf16 asked for but this GPU has no bf16; use precision=fp16 "
                            "(with a gradient scaler) or fp32")
        if not ok and warn:
            warnings.warn("facegan: precision=bf16 on this CPU is emulated (it has no AVX-512 BF16 "
                          "or AMX), so it is slower than fp32; use precision=fp32 (or auto) for "
                          "speed", stacklevel=2)
        return "bf16"
    if ok:
        return "bf16"
    return "fp16" if device.type == "cuda" else "fp32"


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The autocast context for a resolved ``precision`` ('fp32' | 'bf16' | 'fp16') on ``device``.

    fp32 returns a context that *disables* autocast, so an fp32 call made inside someone
    else's bf16 region stays fp32."""
    if precision == "fp32":
        return torch.autocast(device_type=device.type, enabled=False)
    try:
        dtype = _DTYPES[precision]
    except KeyError:
        raise ValueError(f"precision must be fp32, bf16 or fp16 (resolved), not {precision!r}") from None
    return torch.autocast(device_type=device.type, dtype=dtype)


def use_fused(setting: str, device: torch.device) -> bool:
    """train.fused_optimizer: 'auto' is on for CUDA (one kernel for all parameters instead of
    several per tensor), off elsewhere."""
    return setting == "on" or (setting == "auto" and device.type == "cuda")


def cpu_name() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), for figures that must name their machine."""
    import platform

    for line in _cpuinfo().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"
