"""Compare the benchmarks of two git revisions: medians of alternating runs, one table.

    python bench/ab_compare.py BEFORE AFTER [--runs 5] [--work /tmp/thoth-ab]

Each revision is exported (`git archive`, so the working tree and git's worktree list stay
untouched) to WORK/tree-<commit>, and its dependencies are installed into a venv kept per
pyproject.toml (WORK/venv-<blob>); both are reused when present. The package itself is not
installed: every bench runs as `PYTHONPATH=<tree>/src python bench/<name>.py` from its tree, so
the code measured is the revision's.

Why alternate: the machine is shared (other work loads the two cores unevenly over minutes). Run
k of every bench goes before/after (odd k: after/before), so both revisions meet the same load
within seconds of each other and a drift in the load lands on both sides, not on one.

Per headline figure: median before, median after, after/before, the interquartile range (the
larger of the two sides', relative to the before median) and PASS when the after median is not
worse than the before median by more than max(5%, IQR). Benches whose flags differ between
revisions get only the flags their --help lists.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import statistics
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXTRAS = "server,postgres,policy"
RUN_TIMEOUT_S = 300

# (figure name, higher is better) -> value, from one run's output
Figures = dict[tuple[str, bool], float]


def _num(text: str) -> float:
    return float(text.replace(",", ""))


def parse_enforce(out: str) -> Figures:
    fig: Figures = {}
    for name, label in (("thoth /v1/enforce", "enforce"), ("thoth, analytics off", "enforce analytics off")):
        rows = re.findall(rf"round \d+ {re.escape(name)}\s+c64:\s+([\d,]+) req/s\s+p50 ([\d.]+) ms\s+"
                          rf"p99 ([\d.]+) ms.*?\| c1: ([\d,]+) req/s\s+p50 ([\d.]+) ms", out)
        if rows:
            rps, _p50, p99, _c1rps, c1p50 = rows[-1]
            fig[(f"{label} c64 req/s", True)] = _num(rps)
            fig[(f"{label} c64 p99 ms", False)] = _num(p99)
            fig[(f"{label} c1 p50 ms", False)] = _num(c1p50)
    ratio = re.findall(r"ratio to bare at 64 connections: thoth ([\d.]+)x", out)
    if ratio:
        fig[("enforce c64 / bare ASGI", True)] = _num(ratio[-1])
    return fig


def parse_ingest(out: str) -> Figures:
    fig: Figures = {}
    rows = re.findall(r"round \d+ thoth\s*:\s+([\d,]+) events/s .*?batch p50 ([\d.]+) ms\s+p99 ([\d.]+) ms", out)
    if rows:
        fig[("ingest events/s", True)] = _num(rows[-1][0])
        fig[("ingest batch p99 ms", False)] = _num(rows[-1][2])
    ratio = re.findall(r"ratio to bare: ([\d.]+)x", out)
    if ratio:
        fig[("ingest / bare ASGI", True)] = _num(ratio[-1])
    return fig


def parse_policy(out: str) -> Figures:
    m = re.search(r"p50 ([\d.]+) us\s+p99 ([\d.]+) us", out)
    return {("policy decision p50 us", False): _num(m[1]), ("policy decision p99 us", False): _num(m[2])} if m else {}


def parse_sdk_overhead(out: str) -> Figures:
    fig: Figures = {}
    for mode in ("sync", "async"):
        m = re.search(rf"^{mode} governed\s+([\d.]+)\s+([\d.]+)", out, re.M)
        if m:
            fig[(f"sdk {mode} governed p50 ms", False)] = _num(m[1])
            fig[(f"sdk {mode} governed p99 ms", False)] = _num(m[2])
    return fig


def parse_policy_local(out: str) -> Figures:
    fig: Figures = {}
    m = re.search(r"governed-call overhead: p50 (-?[\d.]+) us .*?p99 (-?[\d.]+) us", out)
    if m:
        fig[("local governed overhead p50 us", False)] = _num(m[1])
        fig[("local governed overhead p99 us", False)] = _num(m[2])
    m = re.search(r"enforcer: LocalEnforcer.enforce\s+p50\s+([\d.]+) us", out)
    if m:
        fig[("local LocalEnforcer.enforce p50 us", False)] = _num(m[1])
    return fig


@dataclass(frozen=True)
class Bench:
    script: str
    flags: tuple[str, ...]  # short settings: each run a few seconds
    parse: Callable[[str], Figures]


BENCHES = (
    Bench("bench_enforce.py", ("--seconds", "2", "--rounds", "1"), parse_enforce),
    Bench("bench_ingest.py", ("--seconds", "2", "--rounds", "1"), parse_ingest),
    Bench("bench_policy.py", ("--calls", "5000"), parse_policy),
    Bench("bench_sdk_overhead.py", ("--calls", "600"), parse_sdk_overhead),
    Bench("bench_policy_local.py", ("--calls", "5000"), parse_policy_local),
)


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], check=True, capture_output=True, text=True).stdout.strip()


@dataclass
class Revision:
    label: str
    commit: str
    tree: Path
    python: Path
    flags_known: dict[str, set[str]]


def prepare(label: str, rev: str, work: Path) -> Revision:
    commit = git("rev-parse", "--verify", f"{rev}^{{commit}}")
    tree = work / f"tree-{commit[:12]}"
    if not (tree / "pyproject.toml").exists():
        tree.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    pyproject = (tree / "pyproject.toml").read_bytes()
    venv = work / f"venv-{hashlib.sha256(pyproject).hexdigest()[:12]}"
    python = venv / "bin" / "python"
    if not (venv / ".ready").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        # the revision's dependencies, then not the package itself: PYTHONPATH=<tree>/src is what runs
        subprocess.run([str(python), "-m", "pip", "install", "-q", f"{tree}[{EXTRAS}]"], check=True)
        dist = tomllib.loads(pyproject.decode())["project"]["name"]
        subprocess.run([str(python), "-m", "pip", "uninstall", "-q", "-y", dist], check=True)
        (venv / ".ready").touch()
    known = {}
    for bench in BENCHES:
        help_text = subprocess.run([str(python), f"bench/{bench.script}", "--help"], cwd=tree, capture_output=True,
                                   text=True, env=_env(tree), timeout=120).stdout
        known[bench.script] = set(re.findall(r"(--[a-z][a-z0-9-]*)", help_text))
    print(f"{label}: {commit[:12]} in {tree} (python {python})", flush=True)
    return Revision(label, commit, tree, python, known)


def _env(tree: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("THOTH_")}
    return {**env, "PYTHONPATH": str(tree / "src")}


def flags_for(bench: Bench, known: set[str]) -> list[str]:
    """The bench's short settings that this revision's bench accepts (a flag and its value)."""
    out: list[str] = []
    for i in range(0, len(bench.flags), 2):
        if bench.flags[i] in known:
            out += bench.flags[i:i + 2]
    return out


def run_once(rev: Revision, bench: Bench) -> Figures:
    cmd = [str(rev.python), f"bench/{bench.script}", *flags_for(bench, rev.flags_known[bench.script])]
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=rev.tree, env=_env(rev.tree), capture_output=True, text=True,
                          timeout=RUN_TIMEOUT_S)
    figures = bench.parse(proc.stdout)
    if proc.returncode != 0 or not figures:
        print(f"  {rev.label} {bench.script} failed ({proc.returncode}):\n{proc.stdout[-1500:]}{proc.stderr[-1500:]}",
              flush=True)
        return {}
    print(f"  {rev.label:6} {bench.script:24} {time.monotonic() - started:5.1f} s", flush=True)
    return figures


def iqr(values: list[float]) -> float:
    if len(values) < 2:
        return 0.0
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q3 - q1


def table(samples: dict[str, dict[tuple[str, bool], list[float]]]) -> list[str]:
    before, after = samples["before"], samples["after"]
    lines = [f"{'figure':36} {'before':>10} {'after':>10} {'after/before':>12} {'IQR':>7} {'allowed':>8}  verdict",
             "-" * 98]
    failed = 0
    for key in [k for k in before if k in after] + [k for k in after if k not in before]:
        name, higher_better = key
        b, a = before.get(key, []), after.get(key, [])
        if not b or not a:
            lines.append(f"{name:36} {'-' if not b else statistics.median(b):>10} "
                         f"{'-' if not a else statistics.median(a):>10}  (only one side has it)")
            continue
        mb, ma = statistics.median(b), statistics.median(a)
        spread = max(iqr(b), iqr(a)) / abs(mb) if mb else 0.0
        allowed = max(0.05, spread)
        worse = ((mb - ma) if higher_better else (ma - mb)) / abs(mb) if mb else 0.0
        ok = worse <= allowed
        failed += not ok
        lines.append(f"{name:36} {mb:10.3f} {ma:10.3f} {ma / mb if mb else float('nan'):11.3f}x {spread:6.1%} "
                     f"{allowed:7.1%}  {'PASS' if ok else 'FAIL'}  ({'higher' if higher_better else 'lower'} is better;"
                     f" n={len(b)}/{len(a)})")
    lines.append(f"{failed} figure(s) FAIL" if failed else "every figure PASS")
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--work", type=Path, default=Path("/tmp/thoth-ab"))
    ap.add_argument("--only", nargs="*", default=None, help="bench script names to run (default: all five)")
    ap.add_argument("--prepare-only", action="store_true", help="export the trees and build the venvs, then stop")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    revs = {"before": prepare("before", args.before, args.work), "after": prepare("after", args.after, args.work)}
    if args.prepare_only:
        return 0
    benches = [b for b in BENCHES if not args.only or b.script in args.only]
    samples: dict[str, dict[tuple[str, bool], list[float]]] = {"before": {}, "after": {}}
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    for k in range(args.runs):
        order = ("before", "after") if k % 2 == 0 else ("after", "before")
        print(f"run {k + 1}/{args.runs} ({' then '.join(order)} for each bench)", flush=True)
        for bench in benches:
            for label in order:
                for key, value in run_once(revs[label], bench).items():
                    samples[label].setdefault(key, []).append(value)
    print()
    print(f"before = {args.before} ({revs['before'].commit[:12]}), after = {args.after} ({revs['after'].commit[:12]})")
    print(f"{args.runs} runs each, alternating before/after per bench, started {started}, "
          f"finished {time.strftime('%H:%M:%S UTC', time.gmtime())}")
    print("settings: " + "; ".join(f"{b.script} {' '.join(b.flags)}" for b in benches))
    print("\n".join(table(samples)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
