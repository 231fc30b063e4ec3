#!/usr/bin/env python3
"""Runs the workspace's test binaries (unit tests, integration tests, and the benches
in test mode) that `cargo test --workspace --all-targets` builds, several at a time.

`cargo test` runs one binary after another, and most of the suite's time is spent
waiting: on a local Slurm cluster, on real-time meters that update every 100 ms, on
programs run under `joulebench run`. Run side by side, the waits overlap. A binary
that fails while others ran beside it is run again alone at the end, and reported as
load-sensitive if it passes then: a test that fails alone fails the suite.

usage: scripts/run-tests.py [--jobs N] [--beside COMMAND] [CARGO TEST ARGS...]
  --jobs N            binaries at a time (default: 3)
  --beside COMMAND    a shell command run beside the tests once they are built (the
                      lints); its output is shown at the end, its failure fails the run,
                      and the lone reruns wait for it, so that they have the machine
The binaries are built first with `cargo test --no-run --message-format=json` and the
given cargo arguments (default: --workspace --all-targets).
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

# The longest first, so that they do not end the run alone; the rest in cargo's order.
LONG_FIRST = [
    "slurm",
    "nvrtc_compile",
    "reports",
    "hardening",
    "run",
    "fleet",
    "clocks",
    "model",
    "vendor_meters",
]
PER_BINARY_TIMEOUT_S = 900


def build(cargo_args):
    cmd = ["cargo", "test", "--no-run", "--message-format=json-render-diagnostics"] + cargo_args
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    binaries = []
    for line in proc.stdout:
        try:
            msg = json.loads(line)
        except json.JSONDecodeError:
            continue
        if msg.get("reason") != "compiler-artifact" or not msg.get("executable"):
            continue
        if not msg.get("profile", {}).get("test"):
            continue  # the joulebench binary itself, examples
        target = msg["target"]
        kind = target["kind"][0]
        package = os.path.dirname(msg["manifest_path"])
        src = os.path.relpath(target["src_path"], package)
        label = f"{src} ({os.path.basename(package) or package})"
        if kind in ("lib", "bin"):
            label = f"unit tests {label}"
        binaries.append(
            {"exe": msg["executable"], "dir": package, "name": target["name"], "label": label}
        )
    if proc.wait() != 0:
        sys.exit(proc.returncode)
    return binaries


def order(binaries):
    rank = {name: i for i, name in enumerate(LONG_FIRST)}
    return sorted(
        enumerate(binaries), key=lambda ib: (rank.get(ib[1]["name"], len(rank)), ib[0])
    )


def run(binary, env):
    started = time.monotonic()
    env = dict(env, CARGO_MANIFEST_DIR=binary["dir"])
    try:
        proc = subprocess.run(
            [binary["exe"]],
            cwd=binary["dir"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            timeout=PER_BINARY_TIMEOUT_S,
        )
        status, output = proc.returncode, proc.stdout
    except subprocess.TimeoutExpired as e:
        out = e.stdout or ""
        status = "timeout"
        output = (out.decode(errors="replace") if isinstance(out, bytes) else out) + (
            f"\n(stopped after {PER_BINARY_TIMEOUT_S} s)\n"
        )
    return status, output, time.monotonic() - started


def tests_passed(output):
    passed = 0
    for line in output.splitlines():
        if line.startswith("test result:"):
            parts = line.replace(";", "").split()
            passed += int(parts[parts.index("passed") - 1])
    return passed


def main():
    args = sys.argv[1:]
    jobs, beside = 3, None
    while args and args[0] in ("--jobs", "--beside"):
        if args[0] == "--jobs":
            jobs = int(args[1])
        else:
            beside = args[1]
        args = args[2:]
    binaries = build(args or ["--workspace", "--all-targets"])
    env = dict(os.environ)
    lints = None
    if beside:
        print(f"== beside the tests: {beside}", flush=True)
        # to a file, not a pipe: a pipe nobody reads until the end would stall the lints
        lints_output = tempfile.TemporaryFile(mode="w+", errors="replace")
        lints = subprocess.Popen(beside, shell=True, stdout=lints_output, stderr=subprocess.STDOUT)
    started = time.monotonic()
    failures = []
    passed_total = 0
    print(f"== running {len(binaries)} test binaries, {jobs} at a time", flush=True)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [(b, pool.submit(run, b, env)) for _, b in order(binaries)]
        for b, f in futures:
            status, output, took = f.result()
            passed = tests_passed(output)
            if status == 0:
                passed_total += passed
                print(f"ok     {took:6.1f} s  {passed:4} tests  {b['label']}", flush=True)
            else:
                print(f"FAILED {took:6.1f} s  {b['label']} (status {status}); run again alone at the end", flush=True)
                failures.append((b, output))
    lints_failed = False
    if lints is not None:
        if lints.poll() is None:
            print(f"== waiting for: {beside}", flush=True)
        status = lints.wait()
        print(f"== {beside}: {'ok' if status == 0 else f'FAILED (status {status})'}", flush=True)
        lints_output.seek(0)
        shown = lints_output.read()
        if status != 0 or shown.strip():
            print(shown, flush=True)
        lints_failed = status != 0
    failed_alone = []
    for b, first_output in failures:
        status, output, took = run(b, env)
        passed = tests_passed(output)
        if status == 0:
            passed_total += passed
            print(f"ok     {took:6.1f} s  {passed:4} tests  {b['label']} — alone; it FAILED beside "
                  f"other binaries (load-sensitive), that output:", flush=True)
            print(first_output, flush=True)
        else:
            print(f"FAILED {took:6.1f} s  {b['label']} alone too (status {status}):", flush=True)
            print(output, flush=True)
            failed_alone.append(b["label"])
    print(f"== {passed_total} tests passed in {len(binaries)} binaries, "
          f"{time.monotonic() - started:.0f} s", flush=True)
    if failed_alone:
        print("== failed: " + ", ".join(failed_alone), flush=True)
    if lints_failed:
        print(f"== failed: {beside}", flush=True)
    if failed_alone or lints_failed:
        sys.exit(101)


if __name__ == "__main__":
    main()
