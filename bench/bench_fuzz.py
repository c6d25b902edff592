"""The long fuzz campaign of issue 12: mutated packets through the real gateway and intake, for as long as asked.

    python bench/bench_fuzz.py --seconds 900             # ~15 minutes, a random seed (printed)
    python bench/bench_fuzz.py --examples 5000 --seed 42
    python bench/bench_fuzz.py --replay 1234567890        # one example again, by the seed a failure printed

The road and the oracle are the CI test's (tests/fuzz/road.py, tests/fuzz/test_whole_road.py): one
`axis serve --workers 1` (its gateway child, signer process and intake worker process) on the embedded
defaults in a temporary folder, agencies over HTTP with their own credentials. Here the choices come
from `random.Random`, one seed per example (derived from the campaign's seed), so a failure is replayed
alone with `--replay SEED`; the campaign goes on after a failure and lists them all at the end.

It reports how many packets were tried per family, the answers per family (accepted, duplicate, or
the refusal code), every failure with its seed, the final checks (processes, health, a valid packet,
every delivery byte-identical to something signed and verified by raw signxml), and packets/s beside
the raw cost of the parts measured in the same run: the test's own signing, Axis's verifier (xmlsec) and
raw signxml verification, each per second on one core, and the CPU seconds the campaign cost in each
process (this one, which builds and signs the mutants; `axis serve` and its children).
"""
from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from cpu_usage import cpu_seconds  # bench/, the script's folder

from axis import wire
from axis.edxml import packet_to_bytes
from axis.trust import pki as devpki
from tests.e2e.harness import Deployment
from tests.e2e.packets import AGENCIES, G22, H41, TestPKI
from tests.fuzz.mutations import FAMILIES, RandomDraw
from tests.fuzz.road import Road, install_crl, materials, verify_raw


def make_pki(root: Path) -> TestPKI:
    devpki.init_ca(root / "ca")
    for code in (wire.HUB_IDENTITY, *AGENCIES):
        devpki.issue(code, root / "ca", root / "keys", "ec")
    return TestPKI(root)


def per_second(action, seconds: float = 2.0) -> float:
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        action()
        count += 1
    return count / (time.perf_counter() - start)


def raw_costs(road: Road, pki: TestPKI) -> dict[str, float]:
    """Per second, on one core, in this process: the parts every example pays for at least once."""
    unsigned = packet_to_bytes(road.document(G22, [H41]))
    signed = pki.signer(G22).sign(unsigned)
    verifier = pki.verifier()
    return {"sign (the test, per example)": per_second(lambda: pki.signer(G22).sign(unsigned)),
            "Axis Verifier.verify (xmlsec)": per_second(lambda: verifier.verify(signed)),
            "raw signxml verify": per_second(lambda: verify_raw(signed, pki))}


def session_pids(road: Road) -> list[int]:
    [hub] = road.deployment.hubs
    return [hub.process.pid, *hub.leftovers()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=None, help="stop after this many packets")
    parser.add_argument("--seconds", type=float, default=None, help="stop after this many seconds (default 60)")
    parser.add_argument("--seed", type=int, default=None, help="the campaign's seed (default: a random one)")
    parser.add_argument("--replay", type=int, default=None, help="run the one example of this seed, and show it")
    parser.add_argument("--family", choices=FAMILIES, default=None, help="only this family (default: all)")
    args = parser.parse_args()
    if args.examples is None and args.seconds is None:
        args.seconds = 60.0
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    print(f"seed {seed}" if args.replay is None else f"replaying example seed {args.replay}", flush=True)

    with tempfile.TemporaryDirectory(prefix="axis-fuzz-") as folder:
        root = Path(folder)
        pki = make_pki(root / "pki")
        made = materials(pki)
        deployment = Deployment("embedded", root / "axis-data", pki)
        road: Road | None = None
        try:
            deployment.register(*AGENCIES)
            install_crl(deployment, made)
            deployment.serve()
            road = Road(deployment, pki, made)
            road.setup()
            if args.replay is not None:
                mutant, answer, problems = road.try_one(RandomDraw(args.replay), args.family)
                print(f"{mutant.label} ({len(mutant.data)} bytes; signed by the test: {mutant.signed_by_test}; "
                      f"must refuse: {mutant.must_refuse})\n{mutant.data[:3000]!r}\n-> {answer}")
                print("\n".join(problems) or "no problem")
                return 1 if problems else 0
            costs = raw_costs(road, pki)
            return campaign(road, args, seed, costs)
        finally:
            if road is not None:
                road.close()
            deployment.close()


def campaign(road: Road, args: argparse.Namespace, seed: int, costs: dict[str, float]) -> int:
    seeds = random.Random(seed)
    failures: list[tuple[int, str]] = []
    pids = session_pids(road)
    cpu_hub, cpu_here = cpu_seconds(pids), time.process_time()
    start = time.perf_counter()
    tried = 0
    while True:
        elapsed = time.perf_counter() - start
        if (args.examples is not None and tried >= args.examples) or (args.seconds is not None
                                                                       and elapsed >= args.seconds):
            break
        example_seed = seeds.randrange(2**63)
        try:
            _, _, problems = road.try_one(RandomDraw(example_seed), args.family)
        except Exception as exc:  # noqa: BLE001 - a bug of the fuzzer itself is a failure too, with its seed
            problems = [f"the fuzzer raised {type(exc).__name__}: {exc}"]
        failures += [(example_seed, problem) for problem in problems]
        for problem in problems:
            print(f"FAILURE seed {example_seed}: {problem[:500]}", flush=True)
        tried += 1
        if tried % 500 == 0:
            print(f"  {tried} packets, {time.perf_counter() - start:.0f} s, {len(failures)} failures", flush=True)
    seconds = time.perf_counter() - start
    cpu_hub, cpu_here = cpu_seconds(pids) - cpu_hub, time.process_time() - cpu_here
    report(road, seed, tried, seconds, cpu_hub, cpu_here, costs, failures)
    start = time.perf_counter()
    final = road.final_problems()
    print(f"final checks ({time.perf_counter() - start:.0f} s, {road.fetched} deliveries fetched and verified): "
          f"{'; '.join(final) if final else 'all passed'}")
    return 1 if failures or final else 0


def report(road: Road, seed: int, tried: int, seconds: float, cpu_hub: float, cpu_here: float,
           costs: dict[str, float], failures: list[tuple[int, str]]) -> None:
    rate = tried / seconds
    print(f"\nseed {seed}: {tried} packets in {seconds:.0f} s = {rate:.1f} packets/s "
          f"(one request at a time)")
    print("\n| family | tried | answers |\n|---|---:|---|")
    for family in FAMILIES:
        answers = sorted(((what, n) for (f, what), n in road.tally.answers.items() if f == family),
                         key=lambda item: -item[1])
        print(f"| {family} | {road.tally.tried[family]} | {', '.join(f'{w} {n}' for w, n in answers)} |")
    print(f"\n{len(road.tally.mutations)} distinct mutations; least tried: "
          + ", ".join(f"{m} {n}" for m, n in sorted(road.tally.mutations.items(), key=lambda i: i[1])[:5]))
    print("\nmutants that passed (accepted, or a duplicate of an accepted packet): "
          + ", ".join(f"{m} {n}" for m, n in sorted(road.tally.passed.items())))
    print("\n| part | per second | campaign packets/s as a fraction |\n|---|---:|---:|")
    for part, per in costs.items():
        print(f"| {part} | {per:,.0f} | {rate / per:.3f} |")
    print(f"\nCPU: axis serve and its children {cpu_hub:.1f} s ({1000 * cpu_hub / tried:.1f} ms/packet), "
          f"this process {cpu_here:.1f} s ({1000 * cpu_here / tried:.1f} ms/packet)")
    print(f"byte strings that may be delivered (signed by the test, or accepted mutants): {len(road.deliverable)}")
    print(f"\nfailures: {len(failures)}")
    for example_seed, problem in failures:
        print(f"  --replay {example_seed}: {problem[:300]}")


if __name__ == "__main__":
    sys.exit(main())
