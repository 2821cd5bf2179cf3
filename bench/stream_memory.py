"""Stream memory benchmark: the engine's RSS with 10,000 connected idle subscribers, during and after
bursts of events to them (issue 5: "memory stays bounded with 10,000 connected clients").

Steps, one engine process (``python -m pyiii.cli -c CONFIG``: worker manager + iii-stream, kv in memory),
the processes of ``stream_fanout.py`` (its publisher and its lean raw-protocol clients):

1. **base**: the engine's RSS with the publisher connected and no subscriber;
2. **steady**: after N subscribers (default 10,000, 2 client processes) connected and joined one group,
   then idle; reported per connection as ``(steady - base) / N``;
3. **bursts**: ``--bursts`` times, ``--burst-events`` events of ``--pad-bytes`` sent at ``--burst-rate``/s
   (far above what the engine delivers to N sockets, so per-connection backlogs build up), every
   delivery awaited at the clients; the peak RSS during the burst (sampled every 20 ms) and the RSS
   once it is delivered and the engine idles;
4. **bounded**: after the last burst, the RSS must be within noise of the steady value
   (``<= steady + max(--noise-pct % of steady, --noise-mib)``) and must not grow from burst to burst
   (last after-burst <= first after-burst + the same noise). CPython keeps freed small objects in its
   arenas and the allocator keeps freed pages, so "returns to within noise" is checked, not "returns
   exactly".

RSS is ``VmRSS`` of ``/proc/PID/status``. Kernel socket buffers are not in it (they are the kernel's
memory, bounded per socket: see ``modules/stream/limits.py``); the system-wide TCP memory of
``/proc/net/sockstat`` is printed for context (it includes the clients' buffers and other processes').
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
import stream_fanout  # noqa: E402
from _common import Children, install_signal_exit  # noqa: E402

MIB = 1024 * 1024


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def tcp_mem_bytes() -> int:
    """System-wide kernel TCP buffer memory (``/proc/net/sockstat``, pages): every process's sockets."""
    with open("/proc/net/sockstat") as f:
        for line in f:
            if line.startswith("TCP:"):
                fields = line.split()
                return int(fields[fields.index("mem") + 1]) * os.sysconf("SC_PAGE_SIZE")
    return 0


def settled_rss(pid: int, seconds: float) -> tuple[int, list[int]]:
    """The median of RSS samples over ``seconds`` (the engine idle), and the samples."""
    samples = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        samples.append(rss_bytes(pid))
        time.sleep(0.1)
    return int(statistics.median(samples)), samples


class PeakSampler:
    """The highest RSS seen while it runs (a thread sampling every 20 ms)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self.peak_tcp = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes(self.pid))
            self.peak_tcp = max(self.peak_tcp, tcp_mem_bytes())
            self._stop.wait(0.02)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def measure(args: argparse.Namespace) -> dict[str, Any]:
    fan_args = stream_fanout.parse_args(["--layout", args.layout, "--client-procs", str(args.client_procs)])
    fan_args.verbose = args.verbose
    fan_args.pad_bytes = args.pad_bytes
    children = Children()
    out: dict[str, Any] = {"n": args.n, "bursts": []}
    with tempfile.TemporaryDirectory(prefix="pyiii-stream-memory-") as tmp:
        run = stream_fanout.Run(fan_args, children, Path(tmp))
        try:
            assert run.engine is not None
            pid = run.engine.pid
            run.paced(stream_fanout.PYIII, 50, 0.2)  # warm the send path (no subscriber yet)
            out["base"], _ = settled_rss(pid, args.settle_s)
            out["base_tcp"] = tcp_mem_bytes()
            stream_fanout.progress(fan_args, f"connecting {args.n} subscribers")
            out["connect_s"] = run.connect(stream_fanout.PYIII, args.n)
            out["steady"], samples = settled_rss(pid, args.settle_s)
            out["steady_spread"] = max(samples) - min(samples)
            out["steady_tcp"] = tcp_mem_bytes()
            for i in range(args.bursts):
                stream_fanout.progress(fan_args, f"burst {i + 1}/{args.bursts}")
                with PeakSampler(pid) as peak:
                    count = args.burst_events
                    got = run.paced(stream_fanout.PYIII, args.burst_rate, count / args.burst_rate)
                after, _ = settled_rss(pid, args.settle_s)
                out["bursts"].append(
                    {
                        "delivered": got["delivered"],
                        "expected": got["expected"],
                        "peak": peak.peak,
                        "peak_tcp": peak.peak_tcp,
                        "after": after,
                    }
                )
            run.disconnect(stream_fanout.PYIII)
            out["disconnected_early"], _ = settled_rss(pid, args.settle_s)
            time.sleep(6)  # teardown's close handshakes end within close_timeout_s (5 s)
            out["disconnected"], _ = settled_rss(pid, args.settle_s)
        finally:
            run.stop()
    return out


def summarize(out: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    n = out["n"]
    steady = out["steady"]
    noise = max(steady * args.noise_pct / 100, args.noise_mib * MIB)
    first_after = out["bursts"][0]["after"]
    last_after = out["bursts"][-1]["after"]
    checks = [
        (
            last_after <= steady + noise,
            f"after the bursts within noise of steady (<= steady + {noise / MIB:.1f} MiB)",
            f"{(last_after - steady) / MIB:+.1f} MiB",
        ),
        (
            last_after <= first_after + noise,
            "no growth from burst to burst (last after <= first after + noise)",
            f"{(last_after - first_after) / MIB:+.1f} MiB",
        ),
    ]
    return {
        "per_connection_kib": (steady - out["base"]) / n / 1024,
        "peak_per_connection_kib": (max(b["peak"] for b in out["bursts"]) - out["base"]) / n / 1024,
        "checks": checks,
    }


def render(out: dict[str, Any], summary: dict[str, Any], args: argparse.Namespace) -> str:
    when = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    mib = lambda b: f"{b / MIB:8.1f} MiB"  # noqa: E731
    lines = [
        f"pyiii stream memory benchmark  {when}  nproc={os.cpu_count()}  python {platform.python_version()}",
        f"{args.n} subscribers in {args.client_procs} client processes; layout {args.layout}; bursts of"
        f" {args.burst_events} events of {args.pad_bytes} B padding at {args.burst_rate:g}/s",
        "",
        f"engine RSS, no subscriber                 {mib(out['base'])}",
        f"engine RSS, {args.n} idle subscribers      {mib(out['steady'])}"
        f"   ({summary['per_connection_kib']:.1f} KiB per connection; samples spread"
        f" {out['steady_spread'] / MIB:.1f} MiB; connected in {out['connect_s']:.1f} s)",
    ]
    for i, b in enumerate(out["bursts"], 1):
        lines.append(
            f"burst {i}: peak {mib(b['peak'])}, after {mib(b['after'])}"
            f" ({(b['after'] - out['steady']) / MIB:+.1f} MiB vs steady); kernel TCP memory peak"
            f" {b['peak_tcp'] / MIB:.1f} MiB;"
            f" delivered {b['delivered']}/{b['expected']}"
        )
    lines.append(
        f"after every subscriber disconnected       {mib(out['disconnected_early'])} in the first"
        f" {args.settle_s:g} s, {mib(out['disconnected'])} 6 s later"
    )
    lines.append(
        f"kernel TCP memory (system-wide, all processes): {out['base_tcp'] / MIB:.1f} MiB before,"
        f" {out['steady_tcp'] / MIB:.1f} MiB with the idle subscribers"
    )
    lines.append(f"peak per connection: {summary['peak_per_connection_kib']:.1f} KiB")
    lines += ["", "checks:"]
    for ok, what, value in summary["checks"]:
        lines.append(f"  {'PASS' if ok else 'MISS'}  {what}: {value}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=10_000, help="idle subscribers")
    p.add_argument("--client-procs", type=int, default=2)
    p.add_argument("--bursts", type=int, default=3)
    p.add_argument("--burst-events", type=int, default=20, help="events per burst (each to every subscriber)")
    p.add_argument("--burst-rate", type=float, default=1000.0, help="events/s of a burst")
    p.add_argument("--pad-bytes", type=int, default=1024, help="string padding in each event's data")
    p.add_argument("--settle-s", type=float, default=3.0, help="idle seconds sampled for a settled RSS")
    p.add_argument("--noise-pct", type=float, default=5.0)
    p.add_argument("--noise-mib", type=float, default=8.0)
    p.add_argument("--layout", choices=stream_fanout.LAYOUTS, default="split")
    p.add_argument("--json", action="store_true")
    p.add_argument("--verbose", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    install_signal_exit()
    stream_fanout.raise_nofile()
    out = measure(args)
    summary = summarize(out, args)
    if args.json:
        print(json.dumps({"results": out, "summary": summary}))
    else:
        print(render(out, summary, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
