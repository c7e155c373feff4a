"""Kernel tests run Triton on CPU through its interpreter.

``TRITON_INTERPRET`` must be set before any ``@triton.jit`` function is defined, so it is set here,
at import time, before ``recsys_lab.kernels``'s Triton modules are imported (they are imported
lazily by the dispatcher). On a machine with a CUDA GPU the kernels run compiled instead.
"""

from __future__ import annotations

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
