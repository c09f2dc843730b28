#!/usr/bin/env python3
"""PyTorch's timings of the shapes bench/cuda/driver.cpp times, for the table bench/cuda/run.sh prints.

    python3 bench/cuda/torch_ref.py --json OUT.json [--quick]

Timed as the driver's device timers time (native/cuda/runtime.cu median_seconds): one warm-up, then each launch
bracketed by its own pair of CUDA events, the median reported. Shapes:
  - torch.nn.functional.layer_norm on [16384, cols] fp32, cols 512 / 1024 / 4096, and the same after x + residual
    (what chimera's fused add + LayerNorm computes; eager PyTorch runs it as two kernels);
  - torch._int_mm (int8 x int8 -> int32) at 4096^3 and the OPUS-MT shapes M 1/32/128 x N 512/1536/2048/58101 x
    K 512/2048. _int_mm needs M > 16 and N, K multiples of 8: such shapes run padded (M to 32, N up to a
    multiple of 8) and are marked with padded_m / padded_n;
  - fp16 matmul (x [M, K] . w[N, K]^T) at the same shapes.
Exit status 3 (with the reason in the JSON) when torch or a CUDA device is unavailable.
"""
import argparse
import json
import statistics
import sys

SCHEMA = "chimera-torch-ref/1"


def shapes():
    out = [(4096, 4096, 4096)]
    for m in (1, 32, 128):
        for n in (512, 1536, 2048, 58101):
            for k in (512, 2048):
                out.append((m, n, k))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", required=True)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    res = {"schema": SCHEMA, "available": False}

    def finish(code):
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
        return code

    try:
        import torch
    except Exception as e:  # noqa: BLE001 - any import failure means no reference
        res["reason"] = f"torch is not importable: {e}"
        print(f"torch_ref: skipped: {res['reason']}")
        return finish(3)
    res["torch"] = torch.__version__
    if not torch.cuda.is_available():
        res["reason"] = "torch.cuda.is_available() is False"
        print(f"torch_ref: skipped: {res['reason']}")
        return finish(3)
    dev = torch.device("cuda")
    res["available"] = True
    res["device"] = torch.cuda.get_device_name(0)
    res["cuda"] = torch.version.cuda
    torch.backends.cuda.matmul.allow_tf32 = False
    iters = 5 if a.quick else 20

    def median_seconds(fn, n=iters):
        fn()
        torch.cuda.synchronize()
        t = []
        for _ in range(n):
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            fn()
            e.record()
            e.synchronize()
            t.append(s.elapsed_time(e) * 1e-3)
        return statistics.median(t)

    g = torch.Generator(device=dev).manual_seed(5)
    rows = 16384
    res["layernorm"], res["add_layernorm"] = [], []
    for cols in (512, 1024, 4096):
        x = torch.randn(rows, cols, device=dev, generator=g)
        r = torch.randn(rows, cols, device=dev, generator=g)
        w = torch.rand(cols, device=dev, generator=g) + 0.5
        b = torch.randn(cols, device=dev, generator=g)
        n = rows * cols
        t = median_seconds(lambda: torch.nn.functional.layer_norm(x, (cols,), w, b, 1e-5))
        res["layernorm"].append({"rows": rows, "cols": cols, "seconds": t, "bytes": 8 * n, "Bps": 8 * n / t})
        t = median_seconds(lambda: torch.nn.functional.layer_norm(x + r, (cols,), w, b, 1e-5))
        # bytes: what the fused kernel must move (x, residual in; out), so Bps compares with chimera's directly
        res["add_layernorm"].append({"rows": rows, "cols": cols, "seconds": t, "bytes": 12 * n, "Bps": 12 * n / t})
        print(f"torch layer_norm {rows}x{cols}: {res['layernorm'][-1]['seconds'] * 1e6:.1f} us; "
              f"x + r then layer_norm: {t * 1e6:.1f} us")
        del x, r

    res["int_mm"], res["fp16_mm"] = [], []
    for (m, n, k) in shapes():
        ops = 2.0 * m * n * k
        it = iters if m * n * k > (1 << 30) else iters * 5
        pm, pn = max(m, 32) if m <= 16 else m, (n + 7) // 8 * 8
        try:
            a8 = torch.randint(-128, 128, (pm, k), dtype=torch.int8, device=dev, generator=g)
            b8 = torch.randint(-128, 128, (pn, k), dtype=torch.int8, device=dev, generator=g)
            bt = b8.t()  # [k, n] column-major: the layout cuBLASLt's int8 path wants, no copy
            try:
                torch._int_mm(a8, bt)
            except RuntimeError:
                bt = bt.contiguous()  # a build that wants mat2 row-major
            t = median_seconds(lambda: torch._int_mm(a8, bt), it)
            e = {"m": m, "n": n, "k": k, "seconds": t, "tops": ops / t / 1e12}
            if (pm, pn) != (m, n):
                e["padded_m"], e["padded_n"] = pm, pn
            res["int_mm"].append(e)
            if m in (4096, 128):
                print(f"torch _int_mm {m}x{n}x{k}{' (padded)' if (pm, pn) != (m, n) else ''}: {t * 1e6:.1f} us, {ops / t / 1e12:.1f} TOPS")
        except Exception as ex:  # noqa: BLE001 - record and go on
            res["int_mm"].append({"m": m, "n": n, "k": k, "error": str(ex)[:200]})
            print(f"torch _int_mm {m}x{n}x{k} failed: {str(ex)[:200]}")
        try:
            x = torch.randn(m, k, device=dev, generator=g).half()
            w = torch.randn(n, k, device=dev, generator=g).half()
            t = median_seconds(lambda: torch.matmul(x, w.t()), it)
            res["fp16_mm"].append({"m": m, "n": n, "k": k, "seconds": t, "tflops": ops / t / 1e12})
            if m == 4096:
                print(f"torch fp16 matmul {m}x{n}x{k}: {t * 1e6:.1f} us, {ops / t / 1e12:.1f} TFLOPS")
        except Exception as ex:  # noqa: BLE001
            res["fp16_mm"].append({"m": m, "n": n, "k": k, "error": str(ex)[:200]})
        torch.cuda.empty_cache()
    return finish(0)


if __name__ == "__main__":
    sys.exit(main())
