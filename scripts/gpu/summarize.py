#!/usr/bin/env python3
"""Summaries for scripts/gpu-validate.sh, from joulebench's own outputs (stdlib only).

  summarize.py match DEVICES.json        CUDA, NVML and wgpu matched to one GPU by UUID / PCI id
  summarize.py meter CHECK.jsonl         counter vs integrated power, update period, idle W, CV
  summarize.py overhead ON.jsonl OFF.jsonl   throughput with the meter running vs off
  summarize.py speed FILE.jsonl...       TFLOP/s and pJ/FLOP per kernel; ours as % of the vendor's
  summarize.py truth POINTS.jsonl LONG.jsonl   busy windows against 10 s reference windows:
                                         J/FLOP difference, average power against the
                                         enforced limit, run-to-run and within-run spread
"""
import json
import re
import sys


def records(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def pci(s):
    """'00000000:65:00.0' and '0000:65:00.0' and '65:00.0' -> '65:00.0' (lower case)."""
    if not s:
        return None
    m = re.search(r"([0-9a-fA-F]{2}):([0-9a-fA-F]{2})\.([0-7])$", s.strip())
    return f"{m.group(1)}:{m.group(2)}.{m.group(3)}".lower() if m else s.lower()


def detail(entry, key):
    for k, v in entry.get("details", []):
        if k == key:
            return v
    return None


def match(path):
    sections = {s["name"]: s for s in json.load(open(path))}
    cuda = [e for e in sections.get("CUDA", {}).get("entries", []) if e["id"] != "libraries"]
    nvml = sections.get("NVML", {}).get("entries", [])
    wgpu = sections.get("wgpu", {}).get("entries", [])
    ok = True
    print("| CUDA device | UUID | PCI | NVML match | wgpu match |")
    print("|---|---|---|---|---|")
    for c in cuda:
        uuid, bus = detail(c, "uuid"), pci(detail(c, "pci bus id"))
        n = [e["name"] for e in nvml if uuid and uuid in e["name"]]
        w = [e["name"] for e in wgpu if bus and pci(detail(e, "pci bus id")) == bus]
        ok &= bool(n)
        print(f"| {c['name']} | {uuid} | {bus} | {'yes: ' + n[0] if n else 'NO'} | {'yes: ' + w[0] if w else 'no'} |")
    for name in ("CUDA", "NVML", "wgpu"):
        s = sections.get(name, {})
        if not s.get("available"):
            ok = False
            print(f"\n{name}: not available — {s.get('reason')}")
    return 0 if ok and cuda else 1


def meter(path):
    rs = [r for r in records(path) if r["status"] == "measured"]
    print("| kernel | precision | workload | counter update (ms) | idle (W) | avg (W) | J/FLOP CV | counter vs sampled agreement | median diff | worst diff |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rs:
        m, s, c = r["meter"], r["measurement"]["summary"], r["meter"].get("check") or {}
        jpf = s.get("joules_per_flop") or {}
        print("| {} | {} | {} | {:.0f} | {} | {} | {} | {} | {} | {} |".format(
            r["kernel"], r["precision"], r["group"], m["update_period_s"] * 1e3,
            f"{r['idle']['watts']:.1f}" if r.get("idle") else "–",
            f"{s['average_w']:.0f}" if s.get("average_w") else "–",
            f"{100 * jpf['rel_spread']:.2f}%" if jpf else "–",
            f"{c['agreement_pct']:.1f}%" if c else "–",
            f"{c['median_difference_pct']:+.1f}%" if c else "–",
            f"{c['worst_difference_pct']:.1f}%" if c else "–"))
    return 0 if rs else 1


def key(r):
    return (r["kernel"], r["precision"], json.dumps(r["workload"], sort_keys=True))


def overhead(on_path, off_path):
    on = {key(r): r for r in records(on_path) if r["status"] == "measured"}
    off = {key(r): r for r in records(off_path) if r["status"] == "measured"}
    print("| kernel | precision | workload | TFLOP/s meter on | TFLOP/s meter off | overhead |")
    print("|---|---|---|---|---|---|")
    for k in sorted(on.keys() & off.keys()):
        a, b = on[k]["measurement"]["summary"]["tflops"], off[k]["measurement"]["summary"]["tflops"]
        print(f"| {k[0]} | {k[1]} | {on[k]['group']} | {a:.1f} | {b:.1f} | {100 * (b - a) / b:+.2f}% |")
    return 0 if on.keys() & off.keys() else 1


def speed(paths):
    rs = [r for p in paths for r in records(p) if r["status"] == "measured"]
    best = {}
    for r in rs:
        k = (r["group"], r["batch_size"], r["precision"])
        best.setdefault(k, {})[(r["kernel"], r["vendor_kernel"])] = r["measurement"]["summary"]
    print("| workload | batch | precision | kernel | TFLOP/s | pJ/FLOP | % of best vendor TFLOP/s |")
    print("|---|---|---|---|---|---|---|")
    for (g, b, p), ks in sorted(best.items()):
        vendor = max((s["tflops"] for (n, v), s in ks.items() if v), default=None)
        for (n, v), s in sorted(ks.items()):
            jpf = s.get("joules_per_flop")
            pj = f"{jpf['median'] * 1e12:.3f}" if jpf else "–"
            pct = f"{100 * s['tflops'] / vendor:.0f}%" if vendor and not v else ""
            print(f"| {g} | {b} | {p} | {n} | {s['tflops']:.1f} | {pj} | {pct} |")
    return 0 if rs else 1


def truth(points_path, long_path):
    def setting(r):
        return (r["kernel"], r["precision"], json.dumps(r["workload"], sort_keys=True))

    def measured(path):
        return [r for r in records(path) if r["status"] == "measured"
                and r["measurement"]["summary"].get("joules_per_flop")]

    runs = {}
    for r in measured(points_path):
        runs.setdefault(setting(r), []).append(r)
    long = {setting(r): r for r in measured(long_path)}
    print("| kernel | precision | workload | runs | pJ/FLOP (median of runs) | spread within a run | "
          "spread between runs | 10 s window pJ/FLOP | difference | avg W | limit W | avg ≤ limit | flags |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    bad = 0
    for k, rs in sorted(runs.items()):
        jpf = sorted(r["measurement"]["summary"]["joules_per_flop"]["median"] for r in rs)
        med = jpf[len(jpf) // 2]
        within = sorted(r["measurement"]["summary"]["joules_per_flop"]["rel_spread"] for r in rs)
        mean = sum(jpf) / len(jpf)
        between = (sum((x - mean) ** 2 for x in jpf) / (len(jpf) - 1)) ** 0.5 / mean if len(jpf) > 1 else 0.0
        watts = max(r["measurement"]["summary"]["average_w"] or 0.0 for r in rs)
        limit = min((r["power_cap"]["enforced_w"] or float("inf")) for r in rs)
        ref = long.get(k)
        ref_pj = ref["measurement"]["summary"]["joules_per_flop"]["median"] * 1e12 if ref else None
        diff = f"{100 * (med * 1e12 / ref_pj - 1):+.2f}%" if ref_pj else "–"
        under = watts <= limit
        bad += (not under) + (ref_pj is not None and abs(med * 1e12 / ref_pj - 1) > 0.01)
        flags = sorted({f for r in rs for f in r["flags"]})
        print(f"| {k[0]} | {k[1]} | {rs[0]['group']} | {len(rs)} | {med * 1e12:.4f} | "
              f"{100 * within[len(within) // 2]:.2f}% | {100 * between:.2f}% | "
              f"{f'{ref_pj:.4f}' if ref_pj else '–'} | {diff} | {watts:.1f} | {limit:.0f} | "
              f"{'yes' if under else 'NO'} | {' '.join(flags)} |")
    return 1 if bad or not runs else 0


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    sys.exit({"match": lambda: match(*args), "meter": lambda: meter(*args),
              "overhead": lambda: overhead(*args), "speed": lambda: speed(args),
              "truth": lambda: truth(*args)}[cmd]())
