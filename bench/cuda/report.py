#!/usr/bin/env python3
"""The final table of bench/cuda/run.sh: reads what the phases wrote under OUT and prints a short table (also
written to OUT/table.md, with the figures in OUT/summary.json). A figure a phase did not produce is "pending".

    python3 bench/cuda/report.py --out DIR [--dev-cpu FILE]

--dev-cpu: the bench JSON of a dry run on the 2-core development machine (run.sh keeps it at
bench/cuda/fixture/dev-cpu-bench.json), for the batch-32 target, which is stated against that machine.
"""
import argparse
import json
import math
import os

PENDING = "pending"


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def f(v, spec, unit=""):
    return format(v, spec) + unit if num(v) else PENDING


def pick(rows, **kw):
    for r in rows or []:
        if all(r.get(k) == v for k, v in kw.items()):
            return r
    return None


def ratio(a, b, spec=".2f", suffix="x"):
    return format(a / b, spec) + suffix if num(a) and num(b) and b > 0 else PENDING


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--dev-cpu")
    a = ap.parse_args()
    out = a.out
    check = load(os.path.join(out, "check.json"))
    memcheck = load(os.path.join(out, "check-memcheck.json"))
    bench = load(os.path.join(out, "bench.json"))
    torch = load(os.path.join(out, "torch.json"))
    dev_cpu = load(a.dev_cpu) if a.dev_cpu else None
    phases = []
    try:
        with open(os.path.join(out, "phases.tsv")) as fh:
            phases = [line.rstrip("\n").split("\t") for line in fh if line.strip()]
    except OSError:
        pass

    dev = (bench or {}).get("device") or {}
    torch_ok = bool(torch and torch.get("available"))
    lines = []
    name = dev.get("name") or "no CUDA device"
    if not dev.get("available"):
        name += f" ({dev.get('reason') or (check or {}).get('reason') or 'device side pending'})"
    lines.append(f"chimera CUDA run: {name}")
    if phases:
        lines.append("phases: " + ", ".join(f"{p[0]} {p[2] if len(p) > 2 else ''}" for p in phases))
    if check:
        lines.append(f"check: {check.get('passed')} passed, {check.get('failed')} failed, {check.get('skipped')} skipped"
                     + ("" if check.get("device") else " (device checks skipped: no device)"))
    else:
        lines.append("check: pending (no check.json)")
    for label, c in (("check", check), ("memcheck", memcheck)):
        fails = [r for r in (c or {}).get("results", []) if r.get("verdict") == "fail"]
        for r in fails[:12]:
            lines.append(f"  {label} FAIL {r.get('group')} {r.get('name')}: {r.get('detail', '')[:160]}")
        if len(fails) > 12:
            lines.append(f"  ... and {len(fails) - 12} more ({label}.json)")
    greedy = [r for r in (check or {}).get("results", []) if r.get("name", "").startswith("device") and "greedy" in r.get("name", "")]
    for r in greedy:
        lines.append(f"  {r.get('verdict').upper()} {r.get('name')}: {r.get('detail', '')[:160]}")
    if memcheck:
        lines.append(f"compute-sanitizer memcheck (check --quick): {memcheck.get('failed')} failed of {memcheck.get('passed', 0) + memcheck.get('failed', 0)}")
    for label, b in (("this machine", bench), ("the dev machine's baseline", dev_cpu)):
        c = (b or {}).get("cpu") or {}
        if num(c.get("loadavg1")) and num(c.get("hw_threads")) and c["loadavg1"] > 0.5 * c["hw_threads"]:
            lines.append(f"note: {label}'s CPU figures were taken at load average {c['loadavg1']:.1f} on "
                         f"{c['hw_threads']} threads ({c.get('model', '?')}): slower than an idle machine")
    if not torch_ok:
        lines.append("torch reference: " + ((torch or {}).get("reason") or "pending (no torch.json)"))
    lines.append("")

    rows = [("figure", "ours (device)", "torch", "CPU", "ratio / target")]
    copy = (bench or {}).get("copy_bandwidth_Bps")
    rows.append(("D2D copy bandwidth (1 GiB, read+write)", f(copy / 1e9 if num(copy) else None, ".0f", " GB/s"), "", "", "roofline"))
    summary = {"copy_GBps": copy / 1e9 if num(copy) else None}
    for cols in (512, 1024, 4096):
        ours = pick((bench or {}).get("layernorm"), cols=cols, fused_quantize=False)
        t_ln = pick((torch or {}).get("layernorm"), cols=cols)
        t_add = pick((torch or {}).get("add_layernorm"), cols=cols)
        o_s = ours.get("seconds") if ours else None
        o_bps = ours.get("Bps") if ours else None
        pct = 100 * o_bps / copy if num(o_bps) and num(copy) else None
        ours_cell = f"{f(o_s * 1e6 if num(o_s) else None, '.1f', ' us')}, {f(pct, '.0f', ' % of copy')}"
        torch_cell = (f"LN {f(t_ln['seconds'] * 1e6, '.1f', ' us')}, x+r then LN {f(t_add['seconds'] * 1e6, '.1f', ' us')}"
                      if t_ln and t_add else PENDING)
        target = f"{'MET' if num(pct) and pct >= 80 else ('missed' if num(pct) else PENDING)} (>= 80 %); " \
                 f"vs torch x+r,LN {ratio(t_add['seconds'] if t_add else None, o_s, '.2f', 'x faster')}"
        rows.append((f"add+LayerNorm 16384x{cols} fp32", ours_cell, torch_cell, "", target))
        summary[f"ln_{cols}"] = {"us": o_s * 1e6 if num(o_s) else None, "pct_copy": pct,
                                 "torch_ln_us": t_ln["seconds"] * 1e6 if t_ln else None,
                                 "torch_add_ln_us": t_add["seconds"] * 1e6 if t_add else None}
    g = pick((bench or {}).get("gemm_s8"), m=4096, n=4096, k=4096, kernel="fast")
    t = pick((torch or {}).get("int_mm"), m=4096, n=4096, k=4096)
    g_tops, t_tops = (g or {}).get("tops"), (t or {}).get("tops")
    pct = 100 * g_tops / t_tops if num(g_tops) and num(t_tops) else None
    rows.append(("int8 GEMM 4096^3 (mma.sync)", f(g_tops, ".0f", " TOPS"), f(t_tops, ".0f", " TOPS (_int_mm)"), "",
                 f"{f(pct, '.0f', ' % of torch')} {'MET' if num(pct) and pct >= 50 else ('missed' if num(pct) else '')} (>= 50 %)"))
    summary["gemm_s8_4096"] = {"tops": g_tops, "torch_tops": t_tops, "pct_torch": pct}
    # the OPUS-MT shapes: geometric mean of ours / torch time over the shapes both ran
    rs = []
    for e in (bench or {}).get("gemm_s8") or []:
        if e.get("kernel") != "fast" or e.get("m") == 4096:
            continue
        te = pick((torch or {}).get("int_mm"), m=e["m"], n=e["n"], k=e["k"])
        if te and num(te.get("seconds")) and num(e.get("seconds")):
            rs.append(te["seconds"] / e["seconds"])
    gm = math.exp(sum(map(math.log, rs)) / len(rs)) if rs else None
    rows.append((f"int8 GEMM, OPUS shapes ({len(rs) or 24})", "", "", "", f"{f(gm, '.2f', 'x')} torch's speed (geomean; torch padded where _int_mm needs it)"))
    summary["gemm_s8_opus_geomean_speedup_vs_torch"] = gm
    h = pick((bench or {}).get("gemm_f16"), m=4096, n=4096, k=4096)
    th = pick((torch or {}).get("fp16_mm"), m=4096, n=4096, k=4096)
    rows.append(("fp16 GEMM 4096^3", f((h or {}).get("tflops"), ".0f", " TFLOPS"), f((th or {}).get("tflops"), ".0f", " TFLOPS"), "",
                 ratio((h or {}).get("tflops"), (th or {}).get("tflops"), ".2f", "x torch")))

    model = (bench or {}).get("model") or {}
    devm = model.get("device") or {}
    cpu = model.get("cpu") or []
    hw = ((bench or {}).get("cpu") or {}).get("hw_threads")

    def cpu_times(rows_, threads, tier):
        for e in rows_ or []:
            if e.get("threads") == threads and e.get("tier") == tier:
                return e.get("times") or {}
        return {}

    dev_cpu_rows = ((dev_cpu or {}).get("model") or {}).get("cpu")
    def cpu_cell(key, spec, unit, c_hw, c_2, c_dev):
        parts = []
        if hw and hw != 2:
            parts.append(f"{hw}T {f(c_hw.get(key), spec, unit)}")
        parts.append(f"2T {f(c_2.get(key), spec, unit)}")
        if dev_cpu_rows is not None:
            parts.append(f"dev 2T {f(c_dev.get(key), spec, unit)}")
        return ", ".join(parts)

    for tier in ("int8", "fp32"):
        d = devm.get(tier) or {}
        c_hw, c_2 = cpu_times(cpu, hw, tier), cpu_times(cpu, 2, tier)
        c_dev = cpu_times(dev_cpu_rows, 2, tier)
        ttft = d.get("ttft_ms")
        rows.append((f"OPUS-MT {tier}: TTFT b1, S=32", f(ttft, ".2f", " ms"), "", cpu_cell("ttft_ms", ".1f", " ms", c_hw, c_2, c_dev),
                     f"{'MET' if num(ttft) and ttft <= 2 else ('missed' if num(ttft) else PENDING)} (<= 2 ms); "
                     f"{ratio(c_hw.get('ttft_ms'), ttft, '.1f', 'x')} faster than the CPU at {hw}T"))
        b1, b32 = d.get("decode_b1_tok_s"), d.get("decode_b32_tok_s")
        rows.append((f"OPUS-MT {tier}: decode b1", f(b1, ".0f", " tok/s"), "", cpu_cell("decode_b1_tok_s", ".0f", " tok/s", c_hw, c_2, c_dev),
                     f"{ratio(b1, c_hw.get('decode_b1_tok_s'), '.1f', 'x')} the CPU at {hw}T"))
        r2 = b32 / c_2["decode_b32_tok_s"] if num(b32) and num(c_2.get("decode_b32_tok_s")) else None
        rdev = b32 / c_dev["decode_b32_tok_s"] if num(b32) and num(c_dev.get("decode_b32_tok_s")) else None
        tgt = f"{f(r2, '.0f', 'x')} this CPU at 2T"
        if dev_cpu_rows is not None:
            tgt += f", {f(rdev, '.0f', 'x')} the dev machine's 2 cores"
        # judged on this run's own 2-thread figure (one process, same protocol); the dev machine's is context
        best = r2 if num(r2) else rdev
        tgt += f"; {'MET' if num(best) and best >= 20 else ('missed' if num(best) else PENDING)} (>= 20x 2 cores)"
        rows.append((f"OPUS-MT {tier}: decode b32", f(b32, ".0f", " tok/s"), "", cpu_cell("decode_b32_tok_s", ".0f", " tok/s", c_hw, c_2, c_dev), tgt))
        summary[f"model_{tier}"] = {"ttft_ms": ttft, "decode_b1_tok_s": b1, "decode_b32_tok_s": b32,
                                    "cpu_hw_threads": hw, "cpu_hw": c_hw, "cpu_2t": c_2, "dev_cpu_2t": c_dev,
                                    "b32_vs_cpu_2t": r2, "b32_vs_dev_cpu_2t": rdev}

    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    table = ["| " + " | ".join(r[i].ljust(widths[i]) for i in range(5)) + " |" for r in rows]
    table.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    text = "\n".join(lines + table) + "\n"
    print(text, end="")
    with open(os.path.join(out, "table.md"), "w") as fh:
        fh.write(text)
    with open(os.path.join(out, "summary.json"), "w") as fh:
        json.dump(summary, fh, indent=1)


if __name__ == "__main__":
    main()
