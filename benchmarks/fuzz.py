"""A fuzz campaign: random designs built to Verilog, simulated under random stalls on
Verilator, every output code compared with the integer reference, the measured initiation
interval and latency with the plan's cycle model.

    python benchmarks/fuzz.py --start 0 --count 50 [--log benchmarks/fuzz_log.jsonl]
    python benchmarks/fuzz.py --seed 457          # rerun one case, keep its design folder
    python benchmarks/fuzz.py --summary           # totals of the log, across sessions
    python benchmarks/fuzz.py --shared --start 0 --count 20   # every chain on shared engines

Each case is a pure function of its seed (:mod:`hwgen.fuzz`): random graphs with every engine,
bits 2–16, random legal foldings and multiplier kinds, skewed calibration, random stalls. Per
case a line: the layers, frames, codes compared, mismatches, predicted and measured II and
latency. A failing case (a mismatch, a protocol error or a cycle-model error) leaves a
reproducer in ``--failures`` (its outcome, its seed's rerun command and the design files).
Outcomes are appended to ``--log`` so a campaign can run across sessions; seeds already in the
log are skipped. ``--shared`` puts every chain a shared layer-sequential engine computes
(residual blocks included) on one, in its own log (``fuzz_shared_log.jsonl``).
"""

import argparse
import dataclasses
import json
import sys
import tempfile
from pathlib import Path

from hwgen.errors import HwgenError
from hwgen.fuzz import LATENCY_FROM, FuzzOutcome, random_case, run_case, save_reproducer

HERE = Path(__file__).resolve().parent
DEFAULT_LOG = HERE / "fuzz_log.jsonl"
SHARED_LOG = HERE / "fuzz_shared_log.jsonl"
DEFAULT_FAILURES = HERE / "fuzz_failures"

HEADER = (f"{'seed':>6} {'frames':>6} {'codes':>7} {'mism':>4} {'II pred':>7} {'II meas':>8} "
          f"{'lat pred':>8} {'lat meas':>8} {'s':>5}  layers")


def _line(outcome):
    return (f"{outcome.seed:>6} {outcome.frames:>6} {outcome.codes:>7} {outcome.mismatches:>4} "
            f"{outcome.ii_predicted:>7} {outcome.ii_measured:>8.2f} "
            f"{outcome.latency_predicted:>8} {outcome.latency_measured:>8} "
            f"{outcome.seconds:>5.0f}  {outcome.description.partition(': ')[2]}"
            + (f"\n       error: {outcome.error}" if outcome.error else ""))


def read_log(path):
    """The outcomes in the log, one per seed (the last run of a seed counts)."""
    outcomes = {}
    if Path(path).exists():
        for line in Path(path).read_text().splitlines():
            record = json.loads(line)
            record["engines"] = tuple(record["engines"])
            outcomes[record["seed"]] = FuzzOutcome(**record)
    return outcomes


def summarize(outcomes):
    """The campaign's totals as lines of text."""
    outcomes = list(outcomes)
    built = [o for o in outcomes if not o.rejected]
    ii = [o for o in built if o.error is None and o.ii_error != 0]
    timed = [o for o in built if o.error is None and o.latency_from == LATENCY_FROM]
    latency = [o for o in timed if o.latency_error != 0]
    late = [o for o in latency if o.latency_error > 0]
    worst = max((abs(o.latency_error) / max(o.latency_measured, 1) for o in latency),
                default=0.0)
    return [
        f"designs {len(outcomes)} ({len(outcomes) - len(built)} rejected at build), "
        f"frames {sum(o.frames for o in built):,}, codes compared "
        f"{sum(o.codes for o in built):,}",
        f"mismatching codes {sum(o.mismatches for o in built)} in "
        f"{sum(1 for o in built if o.mismatches)} designs; protocol errors "
        f"{sum(1 for o in built if o.error)}",
        f"cycle model: II off in {len(ii)} designs"
        + (f" (seeds {', '.join(str(o.seed) for o in ii[:12])})" if ii else "")
        + f"; latency (from the {LATENCY_FROM}, {len(timed)} designs) off in {len(latency)}"
        + (f" ({len(late)} measured above the prediction, at most {worst:.1%} off; seeds "
           f"{', '.join(str(o.seed) for o in latency[:12])})" if latency else "")
        + (f"; {len(built) - len(timed)} earlier designs timed from the last input beat"
           if len(built) > len(timed) else ""),
    ]


def run(seeds, log, failures, keep=False, shared=False):
    done = read_log(log) if log else {}
    print(HEADER, flush=True)
    outcomes = []
    for seed in seeds:
        if seed in done and not keep:
            continue
        try:
            case = random_case(seed, shared=shared)
        except HwgenError as error:  # a random graph the quantizer rejects is not a failure
            print(f"{seed:>6} generator: {error}", flush=True)
            continue
        with tempfile.TemporaryDirectory(prefix=f"hwgen-fuzz-{seed}-") as folder:
            outcome = run_case(case, folder)
            if keep or not (outcome.passed or outcome.rejected):
                where = save_reproducer(case, outcome, folder, failures, shared=shared)
                print(f"       reproducer: {where}", flush=True)
        print(_line(outcome), flush=True)
        outcomes.append(outcome)
        if log:
            with open(log, "a") as stream:
                stream.write(json.dumps(dataclasses.asdict(outcome)) + "\n")
    return outcomes


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start", type=int, default=0, help="first seed")
    parser.add_argument("--count", type=int, default=20, help="seeds to run")
    parser.add_argument("--seed", type=int, help="run this one seed and keep its design folder")
    parser.add_argument("--log", type=Path,
                        help="outcomes appended here; seeds in it are skipped (default "
                             f"{DEFAULT_LOG}, with --shared {SHARED_LOG})")
    parser.add_argument("--shared", action="store_true",
                        help="every chain on shared layer-sequential engines")
    parser.add_argument("--failures", type=Path, default=DEFAULT_FAILURES,
                        help="reproducers of failing cases go here")
    parser.add_argument("--summary", action="store_true", help="print the log's totals only")
    args = parser.parse_args(argv)
    args.log = args.log or (SHARED_LOG if args.shared else DEFAULT_LOG)
    if args.summary:
        print("\n".join(summarize(read_log(args.log).values())))
        return 0
    if args.seed is not None:
        outcomes = run([args.seed], None, args.failures, keep=True, shared=args.shared)
    else:
        outcomes = run(range(args.start, args.start + args.count), args.log, args.failures,
                       shared=args.shared)
    print("\nthis run: " + "\n          ".join(summarize(outcomes)))
    if args.log and args.seed is None:
        print("whole log: " + "\n           ".join(summarize(read_log(args.log).values())))
    return 0 if all(o.passed or o.rejected for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
