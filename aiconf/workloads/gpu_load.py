#!/usr/bin/env python3
"""A GPU load: bf16 matrix products on one GPU for a fixed time, holding extra memory. Needs PyTorch.

Used for the workload-driven part of ``accelerator_metrics`` (utilisation and memory must move while it runs and
fall after it exits). Prints JSON lines on stdout: ``{"event": "ready", ...}`` once the inputs are allocated and the
first products ran (the load window starts), ``{"event": "done", ...}`` with the iteration count and the achieved
TFLOP/s when it stops (the window ends at process exit). Inputs are random, never zeros.

Run: ``python3 -m aiconf.workloads.gpu_load --seconds 60 --size 8192 --hold-mib 8192 [--device 0]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def emit(**fields: object) -> None:
    print(json.dumps({"t": round(time.time(), 3), **fields}), flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--size", type=int, default=8192, help="square matrix side")
    ap.add_argument("--hold-mib", type=int, default=8192, help="extra device memory held for the whole run")
    ap.add_argument("--device", type=int, default=0, help="CUDA device index (after CUDA_VISIBLE_DEVICES)")
    args = ap.parse_args(argv)
    import torch  # lazy: only GPU machines have it

    if not torch.cuda.is_available():
        emit(event="error", error="CUDA not available")
        return 2
    dev = torch.device("cuda", args.device)
    torch.cuda.set_device(dev)
    gen = torch.Generator(device=dev).manual_seed(1234)
    a = torch.randn(args.size, args.size, device=dev, dtype=torch.bfloat16, generator=gen)
    b = torch.randn(args.size, args.size, device=dev, dtype=torch.bfloat16, generator=gen)
    hold = torch.ones(max(0, args.hold_mib) * 1048576, dtype=torch.uint8, device=dev) if args.hold_mib else None
    c = a @ b
    torch.cuda.synchronize()
    emit(event="ready", device=args.device, name=torch.cuda.get_device_name(dev), size=args.size, hold_mib=args.hold_mib,
         allocated_mib=round(torch.cuda.memory_allocated(dev) / 1048576, 1))
    t0 = time.monotonic()
    iters = 0
    while time.monotonic() - t0 < args.seconds:
        for _ in range(50):
            torch.matmul(a, b, out=c)
        torch.cuda.synchronize()
        iters += 50
    elapsed = time.monotonic() - t0
    flops = 2.0 * args.size**3 * iters
    ok = bool(torch.isfinite(c.float().sum()).item())
    emit(event="done", iterations=iters, seconds=round(elapsed, 2), tflops=round(flops / elapsed / 1e12, 1), finite=ok,
         held=hold is not None)
    return 0 if ok else 3


if __name__ == "__main__":
    sys.exit(main())
