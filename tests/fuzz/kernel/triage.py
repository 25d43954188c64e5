#!/usr/bin/env python3
"""Groups the kernel fuzzer's crash inputs into distinct findings (fuzz_kernel.sh --long).

    python3 triage.py --out DIR --workdir BUILD_DIR [--variants default,im2col]

Every DIR/artifacts/<variant>-crash-* input is replayed with that variant's binary;
its signature is the first sanitizer or harness report (UBSan: check and source line;
ASan: error kind and the first dtmm_ops frame; harness: the finding text). One
reproducer per signature is minimized (libFuzzer -minimize_crash) into
DIR/findings/, and DIR/summary.md / summary.csv list them with the execution counts.
Exit status 1 when there is any finding. Standard library only.
"""

from __future__ import annotations

import argparse
import csv
import glob
import hashlib
import os
import re
import shutil
import subprocess
import sys

UBSAN = re.compile(r"(\S*(?:dtmm_ops|tests/fuzz)/[^\s:]+):(\d+):\d+: runtime error: (.*)")
ASAN = re.compile(r"ERROR: AddressSanitizer: ([\w-]+)")
FRAME = re.compile(r"#\d+ 0x[0-9a-f]+ in (\w+) .*?((?:dtmm_ops|tests/fuzz)/[^\s:]+):(\d+)")
HARNESS = re.compile(r"DTMM FUZZ FINDING: (.*?) \(at")
LAYER = re.compile(r"^\s+(dims:|params:|corruption=).*", re.M)


def run(binary, path, extra=(), timeout=120):
    env = dict(os.environ, DTMM_FUZZ_STATS="0")
    p = subprocess.run([binary, "-timeout=20", "-rss_limit_mb=2048", *extra, path],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                       timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace")


def _rel(path):
    i = path.find("dtmm_ops/")
    j = path.find("tests/fuzz/")
    k = i if i >= 0 else j
    return path[k:] if k >= 0 else os.path.basename(path)


def signature(log: str) -> tuple[str, str]:
    """(signature, kind) of the first report in a replay log."""
    for line in log.splitlines():
        m = HARNESS.search(line)
        if m:
            return f"harness: {m.group(1)}", "wrong result / contract"
        m = UBSAN.search(line)
        if m:
            what = re.sub(r"-?\d+", "N", m.group(3))
            return f"UBSan {_rel(m.group(1))}:{m.group(2)}: {what}", "undefined behaviour"
        m = ASAN.search(line)
        if m:
            kind = m.group(1)
            for fl in log.splitlines():
                f = FRAME.search(fl)
                if f and "dtmm_ops/" in f.group(2):
                    return (f"ASan {kind} in {f.group(1)} {_rel(f.group(2))}:{f.group(3)}",
                            "memory safety")
            return f"ASan {kind}", "memory safety"
        if "ERROR: libFuzzer: timeout" in line:
            return "timeout", "hang"
        if "out-of-memory" in line:
            return "out of memory", "memory"
    return "unknown (no report)", "unknown"


def executions(log_path: str) -> int:
    """Executions of a --long run: the sum over its (restarted) processes, each
    the last '#N' status line before its final stats or the end of the log."""
    total, last = 0, 0
    try:
        with open(log_path, errors="replace") as f:
            for line in f:
                m = re.match(r"#(\d+)\s", line)
                if m:
                    last = max(last, int(m.group(1)))
                m = re.match(r"stat::number_of_executed_units: (\d+)", line)
                if m:
                    total += max(last, int(m.group(1)))
                    last = 0
                if line.startswith("==") and "ERROR: AddressSanitizer" in line:
                    total += last  # this process ends here without final stats
                    last = 0
    except OSError:
        pass
    return total + last


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--variants", default="default")
    ap.add_argument("--no-minimize", action="store_true")
    args = ap.parse_args(argv)
    variants = args.variants.split(",")
    found: dict[str, dict] = {}
    for v in variants:
        binary = os.path.join(args.workdir, f"fuzz_{v}")
        for path in sorted(glob.glob(os.path.join(args.out, "artifacts", f"{v}-*"))):
            if os.path.basename(path).startswith(f"{v}-slow-unit-"):
                continue  # libFuzzer's slow-input report (within -timeout), not a finding
            rc, log = run(binary, path)
            if rc == 0:
                sig, kind = "not reproducible", "flaky"
            else:
                sig, kind = signature(log)
            e = found.setdefault(sig, {"kind": kind, "count": 0, "variants": set(),
                                       "input": path, "binary": binary, "log": log})
            e["count"] += 1
            e["variants"].add(v)
            if os.path.getsize(path) < os.path.getsize(e["input"]):
                e.update(input=path, binary=binary, log=log)
    findings_dir = os.path.join(args.out, "findings")
    os.makedirs(findings_dir, exist_ok=True)
    rows = []
    for sig, e in sorted(found.items()):
        slug = re.sub(r"[^A-Za-z0-9]+", "_", sig).strip("_")[:80]
        dest = os.path.join(findings_dir, f"{slug}.bin")
        best = e["input"]
        if not args.no_minimize and e["kind"] not in ("flaky", "hang"):
            tmp = dest + ".min"
            try:
                run(e["binary"], best, ["-minimize_crash=1", "-runs=4000",
                                        f"-exact_artifact_path={tmp}"], timeout=600)
            except subprocess.TimeoutExpired:
                pass
            if os.path.exists(tmp):
                rc, log = run(e["binary"], tmp)
                if rc != 0 and signature(log)[0] == sig:
                    best, e["log"] = tmp, log
        shutil.copyfile(best, dest)
        if os.path.exists(dest + ".min"):
            os.unlink(dest + ".min")
        layer = " ".join(m.group(0).strip() for m in LAYER.finditer(e["log"]))
        rows.append({"signature": sig, "class": e["kind"], "crash inputs": e["count"],
                     "variants": ",".join(sorted(e["variants"])),
                     "reproducer": os.path.relpath(dest, args.out),
                     "sha1": hashlib.sha1(open(dest, "rb").read()).hexdigest()[:12],
                     "layer": layer})
    execs = {v: executions(os.path.join(args.out, f"fuzz_{v}.log")) for v in variants}
    with open(os.path.join(args.out, "summary.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["signature", "class", "crash inputs", "variants",
                                          "reproducer", "sha1", "layer"])
        w.writeheader()
        w.writerows(rows)
    lines = ["# Kernel fuzzer findings", "",
             "| variant | executions |", "|---|---:|"]
    lines += [f"| {v} | {n:,} |" for v, n in execs.items()]
    lines += [f"| total | {sum(execs.values()):,} |", "",
              "| # | class | signature | crash inputs | variants | reproducer |",
              "|---|---|---|---:|---|---|"]
    for i, r in enumerate(rows, 1):
        lines.append(f"| {i} | {r['class']} | `{r['signature']}` | {r['crash inputs']} | "
                     f"{r['variants']} | {r['reproducer']} |")
    with open(os.path.join(args.out, "summary.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 1 if rows else 0


if __name__ == "__main__":
    sys.exit(main())
