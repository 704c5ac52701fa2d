#!/usr/bin/env bash
# Compares `chitti-agent inspect FILE --json` with flyr 5.1.0 (`flyr.unpack(path).celsius`,
# the Python FLIR reader) on every fixture flyr can read.
#
#   1. builds chitti-agent in release;
#   2. installs flyr 5.1.0 into a throwaway venv in a temp dir (removed on exit; set
#      FLYR_VENV=/path to reuse or keep one);
#   3. times both as whole processes (interpreter / binary start included), median of
#      RUNS runs after one warm-up, with the same Python subprocess loop for both (its own
#      overhead, timed on /bin/true, is printed);
#   4. times flyr in-process (median of 5 after one warm-up, as reference.json does) and
#      compares with chitti's in-process `parse_to_celsius` criterion median (runs the
#      criterion filter unless SKIP_CRITERION=1, then reads its estimates.json);
#   5. checks both agree on the hottest pixel (°C) so the ratio compares equal work.
#
# Usage: common/benches/compare-flyr.sh            (RUNS=20 by default)
# Needs network access to PyPI for step 2 (unless FLYR_VENV points at a ready venv).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
criterion_dir="${CRITERION_HOME:-$target_dir/criterion}"
runs="${RUNS:-20}"

echo "+ cargo build --release -p chitti-agent" >&2
cargo build --release -p chitti-agent >&2
agent="$target_dir/release/chitti-agent"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
venv="${FLYR_VENV:-$tmp/venv}"
if [ ! -x "$venv/bin/python" ]; then
    echo "+ python3 -m venv $venv && pip install flyr==5.1.0" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check flyr==5.1.0 >&2
fi
py="$venv/bin/python"

started="$(date +%s)"
if [ "${SKIP_CRITERION:-0}" != 1 ]; then
    echo "+ cargo bench -p chitti-common --bench thermal -- '^parse_to_celsius/'" >&2
    cargo bench -p chitti-common --bench thermal -- '^parse_to_celsius/' >&2
else
    started=0
fi

export CMP_ROOT="$root" CMP_AGENT="$agent" CMP_RUNS="$runs" CMP_CRITERION_DIR="$criterion_dir"
export CMP_STARTED="$started" CMP_LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
"$py" - <<'PY'
import json, os, pathlib, statistics, subprocess, sys, time

root = pathlib.Path(os.environ["CMP_ROOT"])
agent = os.environ["CMP_AGENT"]
runs = int(os.environ["CMP_RUNS"])
crit = pathlib.Path(os.environ["CMP_CRITERION_DIR"])
fixtures = root / "tests/fixtures/flir"
ref = json.loads((fixtures / "reference.json").read_text())["samples"]

import flyr  # noqa: E402  (installed in this venv)
import numpy as np  # noqa: E402

def median_process_ms(argv):
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)  # warm-up (page cache)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), min(times), max(times)

def flyr_in_process_ms(path):
    flyr.unpack(path).celsius  # warm-up
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        flyr.unpack(path).celsius
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)

def chitti_in_process_ms(name):
    base = crit / "parse_to_celsius" / name / "new"
    est = base / "estimates.json"
    if not est.exists():
        return None, False
    stale = est.stat().st_mtime < int(os.environ["CMP_STARTED"])
    return json.loads(est.read_text())["median"]["point_estimate"] / 1e6, stale

def find_number(obj, keys):
    """First numeric value under any of `keys`, searched depth-first."""
    if isinstance(obj, dict):
        for k in keys:
            if isinstance(obj.get(k), (int, float)):
                return float(obj[k])
        for v in obj.values():
            found = find_number(v, keys)
            if found is not None:
                return found
    if isinstance(obj, list):
        for v in obj:
            found = find_number(v, keys)
            if found is not None:
                return found
    return None

true_ms = median_process_ms(["/bin/true"])[0]
flyr_cmd = [sys.executable, "-c", "import sys, flyr; flyr.unpack(sys.argv[1]).celsius"]
rows = []
for name in sorted(ref):
    path = str(fixtures / name)
    try:
        celsius = flyr.unpack(path).celsius
    except Exception as e:  # flyr cannot read DJI LE-header, EX320, .seq/.csq/.fff
        rows.append((name, None, f"flyr fails: {e.__class__.__name__}: {str(e)[:60]}"))
        continue
    out = subprocess.run([agent, "inspect", path, "--json"], check=True,
                         capture_output=True, text=True).stdout
    report = json.loads(out)
    chitti_max = find_number(report, ["max_c", "max_celsius", "max"])
    flyr_max = float(np.nanmax(celsius))
    agree = chitti_max is not None and abs(chitti_max - flyr_max) <= 0.01
    chitti_proc = median_process_ms([agent, "inspect", path, "--json"])
    flyr_proc = median_process_ms(flyr_cmd + [path])
    flyr_inproc = flyr_in_process_ms(path)
    chitti_inproc, stale = chitti_in_process_ms(name)
    rows.append((name, dict(chitti_proc=chitti_proc, flyr_proc=flyr_proc,
                            flyr_inproc=flyr_inproc, chitti_inproc=chitti_inproc,
                            stale=stale, chitti_max=chitti_max, flyr_max=flyr_max,
                            agree=agree), None))

def f(v):
    return "—" if v is None else (f"{v:.2f}" if v < 10 else f"{v:.1f}")

print()
print("## chitti-agent inspect vs flyr 5.1.0")
print()
print(f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; load average before: "
      f"{os.environ['CMP_LOAD_BEFORE']}")
print(f"- machine: {os.cpu_count()} CPU(s); python {sys.version.split()[0]}, flyr {flyr.__version__ if hasattr(flyr, '__version__') else '5.1.0'}, numpy {np.__version__}")
print(f"- process: median of {runs} runs after 1 warm-up (min–max in brackets), "
      f"python subprocess loop; its own overhead (/bin/true) = {true_ms:.2f} ms, included in both")
print("- chitti process: `chitti-agent inspect FILE --json`; flyr process: "
      "`python -c 'import sys, flyr; flyr.unpack(sys.argv[1]).celsius' FILE`")
print("- in-process: flyr `flyr.unpack(path).celsius` median of 5 after 1 warm-up; chitti "
      "criterion `parse_to_celsius/<fixture>` median (bytes in memory → °C matrix)")
print("- rerun: common/benches/compare-flyr.sh")
print()
print("| fixture | chitti process ms | flyr process ms | flyr/chitti (process) "
      "| chitti in-process ms | flyr in-process ms | flyr/chitti (in-process) | max °C chitti / flyr |")
print("|---|---|---|---|---|---|---|---|")
for name, r, err in rows:
    if r is None:
        print(f"| {name} | | | | | | | {err} |")
        continue
    cp, fp = r["chitti_proc"], r["flyr_proc"]
    ci, fi = r["chitti_inproc"], r["flyr_inproc"]
    agree = "" if r["agree"] else " MISMATCH"
    print(f"| {name} | {f(cp[0])} [{f(cp[1])}–{f(cp[2])}] | {f(fp[0])} [{f(fp[1])}–{f(fp[2])}] "
          f"| {fp[0] / cp[0]:.0f}× | {f(ci)}{' (stale)' if r['stale'] else ''} | {f(fi)} "
          f"| {'—' if ci is None else f'{fi / ci:.0f}×'} "
          f"| {f(r['chitti_max'])} / {f(r['flyr_max'])}{agree} |")
PY
