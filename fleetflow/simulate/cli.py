"""argparse wiring for ``fleetflow simulate`` and ``fleetflow replay``; the CLI package mounts these."""
from __future__ import annotations

import argparse
import time
from collections import Counter

from fleetflow.simulate import config as c
from fleetflow.simulate import sinks
from fleetflow.simulate.engine import Summary, simulate


def _start_ms(text: str) -> int:
    if text == "now":
        # Rounded to the minute: live runs line up with wall-clock validation (future/too-old checks).
        return int(time.time() // 60 * 60_000)
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected epoch ms or 'now', got {text!r}") from None


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a probability in [0, 1], got {text}")
    return value


def add_simulate_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p = parser
    p.add_argument("--seed", type=int, default=c.DEFAULT_SEED, help="same seed, same bytes (default %(default)s)")
    p.add_argument("--start-ms", type=_start_ms, default=c.DEFAULT_START_MS,
                   help="shift start, epoch ms or 'now' (default %(default)s, 2026-03-02 08:00 UTC)")
    p.add_argument("--duration", type=float, default=c.DEFAULT_DURATION_S,
                   help="simulated seconds of fleet activity (default %(default)s)")
    p.add_argument("--vans", type=int, default=c.DEFAULT_VANS, help="default %(default)s")
    p.add_argument("--stops-per-van", type=int, default=c.DEFAULT_STOPS_PER_VAN, help="default %(default)s")
    p.add_argument("--rate", type=float, default=0.0,
                   help="events/s when sending to Kafka; 0 = as fast as possible (default)")
    p.add_argument("--speedup", type=float, default=0.0,
                   help="instead of --rate, follow simulated time N times faster than real time; the backlog "
                        "before the shift goes at once (with --start-ms now and 1, event times track the clock)")
    p.add_argument("--out", metavar="FILE", help="write a replayable JSONL recording")
    p.add_argument("--truth", metavar="FILE", help="write the ground truth JSON")
    p.add_argument("--bootstrap", metavar="HOST:PORT", help="send to Kafka")
    faults = p.add_argument_group("fault injection (probability per ping/scan)")
    faults.add_argument("--dup-rate", type=_rate, default=c.DEFAULT_DUPLICATE_RATE, help="default %(default)s")
    faults.add_argument("--ooo-rate", type=_rate, default=c.DEFAULT_OUT_OF_ORDER_RATE, help="default %(default)s")
    faults.add_argument("--ooo-bound", type=float, default=c.DEFAULT_OUT_OF_ORDER_BOUND_S,
                        help="max out-of-order displacement, seconds (default %(default)s)")
    faults.add_argument("--late-rate", type=_rate, default=c.DEFAULT_LATE_RATE, help="default %(default)s")
    faults.add_argument("--malformed-rate", type=_rate, default=c.DEFAULT_MALFORMED_RATE, help="default %(default)s")
    faults.add_argument("--stall-rate", type=float, default=c.DEFAULT_STALL_RATE_PER_HOUR,
                        help="breakdowns per van per driving hour (default %(default)s)")
    faults.add_argument("--dropout-rate", type=_rate, default=c.DEFAULT_DROPOUT_RATE, help="default %(default)s")
    faults.add_argument("--cell-rate", type=_rate, default=c.DEFAULT_CELL_FALLBACK_RATE, help="default %(default)s")
    faults.add_argument("--multi-leg-rate", type=_rate, default=c.DEFAULT_MULTI_LEG_RATE, help="default %(default)s")
    faults.add_argument("--failed-attempt-rate", type=_rate, default=c.DEFAULT_FAILED_ATTEMPT_RATE,
                        help="default %(default)s")
    faults.add_argument("--exception-rate", type=_rate, default=c.DEFAULT_EXCEPTION_RATE, help="default %(default)s")
    faults.add_argument("--edge-park-rate", type=_rate, default=c.DEFAULT_EDGE_PARK_RATE,
                        help="share of stops parked just inside the stop fence's edge (default %(default)s)")
    faults.add_argument("--ping-interval", type=float, nargs=2, metavar=("MIN_S", "MAX_S"),
                        default=(c.DEFAULT_PING_INTERVAL_MIN_S, c.DEFAULT_PING_INTERVAL_MAX_S),
                        help="seconds between pings, uniform (default %(default)s)")
    _add_progress_args(p)
    return p


def add_replay_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("file", help="a recording written by simulate --out")
    parser.add_argument("--bootstrap", metavar="HOST:PORT", required=True)
    parser.add_argument("--truth", metavar="FILE",
                        help="the recording's truth file: the topics' start offsets are added to it, so "
                             "`fleetflow accounting FILE` can check this replay afterwards")
    parser.add_argument("--rate", type=float, default=0.0, help="events/s; 0 = as fast as possible (default)")
    parser.add_argument("--speedup", type=float, default=0.0,
                        help="honour recorded offsets, N times faster; ignored when --rate is set (default off)")
    parser.add_argument("--from-offset-ms", type=int, default=0,
                        help="with --speedup, send records before this offset at once (e.g. the truth file's "
                             "start_ms - recording_start_ms skips waiting through the pre-shift backlog)")
    _add_progress_args(parser)
    return parser


def _add_progress_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_mutually_exclusive_group()
    g.add_argument("--progress", dest="progress", action="store_true", default=None,
                   help="progress display even when stderr is not a terminal")
    g.add_argument("--no-progress", dest="progress", action="store_false")


def config_from_args(args: argparse.Namespace) -> c.SimConfig:
    return c.SimConfig(
        seed=args.seed, start_ms=args.start_ms, duration_s=args.duration, vans=args.vans,
        stops_per_van=args.stops_per_van, duplicate_rate=args.dup_rate, out_of_order_rate=args.ooo_rate,
        out_of_order_bound_s=args.ooo_bound, late_rate=args.late_rate, malformed_rate=args.malformed_rate,
        stall_rate_per_hour=args.stall_rate, dropout_rate=args.dropout_rate, cell_fallback_rate=args.cell_rate,
        multi_leg_rate=args.multi_leg_rate, failed_attempt_rate=args.failed_attempt_rate,
        exception_rate=args.exception_rate, edge_park_rate=args.edge_park_rate,
        ping_interval_min_s=args.ping_interval[0], ping_interval_max_s=args.ping_interval[1], out_path=args.out, truth_path=args.truth, bootstrap=args.bootstrap,
        rate_eps=args.rate, speedup=args.speedup, progress=sinks.progress_wanted(args.progress))


def run_simulate(args: argparse.Namespace) -> int:
    summary = simulate(config_from_args(args))
    print_summary(summary)
    return 0


def run_replay(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    total = sum(1 for _ in sinks.read_recording(args.file))
    by_topic: Counter[str] = Counter()

    def counted():
        for item in sinks.read_recording(args.file):
            by_topic[item.topic] += 1
            yield item

    if args.truth:
        from fleetflow.simulate import accounting
        truth = sinks.read_truth(args.truth)
        truth[accounting.OFFSETS_KEY] = accounting.end_offsets(args.bootstrap)
        sinks.write_truth(args.truth, truth)
    t0 = time.monotonic()
    pacer = sinks.Pacer(args.rate, args.speedup, args.from_offset_ms)
    sent = sinks.send_all(sinks.KafkaSink(args.bootstrap), counted(), total, pacer,
                          sinks.progress_wanted(args.progress), "replay → kafka")
    table = Table(title=f"replayed {args.file} to {args.bootstrap}")
    table.add_column("topic")
    table.add_column("records", justify="right")
    for topic, n in sorted(by_topic.items()):
        table.add_row(topic, str(n))
    table.add_row("total", str(sent), end_section=True)
    table.add_row("wall s", f"{time.monotonic() - t0:.1f}")
    Console().print(table)
    return 0


def print_summary(summary: Summary, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    t = Table(title=f"simulation seed={summary.seed} vans={summary.vans} "
                    f"{(summary.end_ms - summary.start_ms) / 1000:.0f} simulated s")
    t.add_column("topic")
    t.add_column("records", justify="right")
    t.add_column("valid unique", justify="right")
    for topic in sorted(summary.records_by_topic):
        t.add_row(topic, str(summary.records_by_topic[topic]), str(summary.valid_by_topic.get(topic, 0)))
    t.add_row("total", str(summary.total_records), str(sum(summary.valid_by_topic.values())), end_section=True)
    t.add_row("duplicates", str(summary.duplicates), "")
    kinds = ", ".join(f"{k.lower()} {v}" for k, v in summary.malformed_by_kind.items() if v)
    t.add_row("malformed", str(summary.malformed), kinds)
    t.add_row("late (5-30 min)", str(summary.late), "")
    t.add_row("out-of-order", str(summary.out_of_order), "", end_section=True)
    t.add_row("stalls injected", str(summary.stalls), "")
    t.add_row("driver breaks", str(summary.breaks), "")
    t.add_row("deliveries / failed attempts / exceptions",
              f"{summary.deliveries} / {summary.failed_attempts} / {summary.exceptions}", "", end_section=True)
    t.add_row("generate cpu s", f"{summary.generate_s:.2f}", "")
    if summary.sent:
        t.add_row("sent / wall s", f"{summary.sent} / {summary.send_s:.1f}", "")
    console.print(t)
    for line in summary.outputs:
        console.print(line)


__all__ = ["add_simulate_args", "add_replay_args", "run_simulate", "run_replay", "config_from_args",
           "print_summary"]
