"""Mixed precision: one setting, ``precision`` = "fp32", "bf16" or "auto".

``bf16`` runs the matrix products in bfloat16 under ``torch.autocast`` (on a CPU with native bf16
arithmetic, or a GPU); master weights, optimizer state, the loss's log-softmax and reduction, the
attention softmax and the decoders' log-probabilities stay float32. On a CUDA device without bf16,
``auto`` picks fp16 with a gradient scaler. What ``auto`` picks on a CPU with bf16 is
``AUTO_ON_BF16_CPU``, chosen from a measured quality comparison (``utils.studies.precision``).
"""
from __future__ import annotations

import contextlib
import os
from typing import ContextManager

import torch

PRECISIONS = ("fp32", "bf16", "auto")
# Set to 1 to allow precision="bf16" on a CPU without native bf16: PyTorch then emulates it, with the
# same rounding but several times slower (for measuring bf16's effect on quality on such a machine).
EMULATE_ENV = "SEQ2SEQ_EMULATED_BF16"
# What "auto" means on a CPU that computes bf16 natively: bf16, whose best validation loss was within
# 1% of fp32's when trained to early stopping (plots/convergence_study.csv, "today" and "today-bf16").
AUTO_ON_BF16_CPU = "bf16"
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_has_bf16() -> bool:
    """True when this CPU computes bf16 natively (AVX-512 BF16 or AMX tiles), as torch reports it."""
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def machine_description() -> dict:
    """This machine as a timing needs it said: CPU model, cores, native bf16 (AVX-512 BF16, AMX), GPU, torch."""
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    return {"cpu": cpu, "cores": os.cpu_count(), "avx512_bf16": bool(torch.cpu._is_avx512_bf16_supported()),
            "amx": bool(torch.cpu._is_amx_tile_supported()),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None, "torch": torch.__version__}


def check_precision(precision: str) -> str:
    """``precision`` if it is one of the three names, else one clear ValueError listing them."""
    if precision not in PRECISIONS:
        raise ValueError(f"Unknown precision {precision!r}; use one of 'fp32', 'bf16' or 'auto'.")
    return precision


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """The arithmetic a run uses on ``device``: "fp32", "bf16" or (CUDA without bf16) "fp16".
    A resolved name resolves to itself."""
    device = torch.device(device)
    if precision == "fp16" and device.type == "cuda":
        return "fp16"
    check_precision(precision)
    if precision == "fp32":
        return "fp32"
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return "bf16"
        if precision == "bf16":
            raise ValueError("precision='bf16' was asked for, but this GPU has no bf16 arithmetic; use 'auto' "
                             "(fp16 with a gradient scaler) or 'fp32'.")
        return "fp16"
    if device.type == "cpu":
        if cpu_has_bf16():
            return "bf16" if precision == "bf16" else AUTO_ON_BF16_CPU
        if precision == "bf16" and os.environ.get(EMULATE_ENV) != "1":
            raise ValueError("precision='bf16' was asked for, but this CPU has no native bf16 arithmetic "
                             "(AVX-512 BF16 or AMX); use 'auto' or 'fp32'.")
        return precision if precision == "bf16" else "fp32"
    if precision == "bf16":
        raise ValueError(f"precision='bf16' is supported on CPU and CUDA, not {device.type}; use 'auto' or 'fp32'.")
    return "fp32"


def autocast(precision: str, device: torch.device | str) -> ContextManager:
    """The autocast context of a resolved precision ("fp32": none)."""
    device = torch.device(device)
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=_DTYPES[precision])


def compute_dtype(device_type: str = "cpu") -> torch.dtype:
    """The dtype matrix products run in right now: the autocast dtype inside autocast, else float32."""
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return torch.float32


def grad_scaler(precision: str, device: torch.device | str) -> torch.amp.GradScaler:
    """A gradient scaler, enabled only for fp16 (bf16 has float32's range and needs none)."""
    return torch.amp.GradScaler(torch.device(device).type, enabled=precision == "fp16")
