"""The cost of signing through the signer process's socket, next to signing with the key in process.

    python bench/bench_signer.py [--batch 100] [--rounds 30] [--key-type ec|rsa|both]

What is measured, on a fresh development PKI (the axis key EC P-256 and RSA-3072, as `axis pki issue`
makes them):
- a batch of `--batch` intake receipts signed by `LocalSigner.sign_receipts` (the key in this process,
  what a hub worker did before the signer existed) and by `SignerClient.sign_receipts` (one request to a
  signer process with one signing process: the encoding, the socket both ways, the decoding), in turn,
  round after round; the medians and their ratio;
- the same for `seal_many` of `--batch` packets (the other request a hub batch makes);
- one round trip alone (`certificates()`: no signing), what the socket adds to any call;
- throughput with several callers at once (one thread each, batches of `--batch`): receipts/s with one
  signing process and with one per core, which is how `AXIS_SIGNER_PROCESSES` was chosen.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from axis import wire
from axis.receipt import Receipt, build_receipt, now_utc
from axis.signer import LocalSigner, SignerChild, SignerClient
from axis.trust import pki


def make_receipts(count: int) -> list[bytes]:
    return [build_receipt(Receipt(kind="intake", outcome="accepted", issuer=wire.HUB_IDENTITY, time=now_utc(),
                                  axis_id=wire.new_axis_id(), submission=wire.new_submission_id(),
                                  sender="000.00.00.G22", document_id=f"{i}/VPCP-TTĐT", digest=f"{i:064x}"))
            for i in range(count)]


def make_packets(count: int) -> list[tuple[str, list[str], str]]:
    return [(wire.new_axis_id(), ["000.00.00.H41", "000.00.00.H14"], f"{i:064x}") for i in range(count)]


def alternate(pairs: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median seconds of each call, the calls taking turns round after round (one warm-up round first)."""
    times: dict[str, list[float]] = {name: [] for name in pairs}
    for round_ in range(rounds + 1):
        for name, call in pairs.items():
            start = time.perf_counter()
            call()
            if round_:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def throughput(socket: Path, callers: int, batch: list[bytes], seconds: float) -> float:
    """Receipts signed per second by `callers` threads, each sending batches to the signer."""
    counts = [0] * callers
    stop = time.perf_counter() + seconds

    def call(index: int) -> None:
        client = SignerClient(socket)
        while time.perf_counter() < stop:
            client.sign_receipts(batch)
            counts[index] += len(batch)
    threads = [threading.Thread(target=call, args=(i,)) for i in range(callers)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.perf_counter() - start)


def run(kind: str, root: Path, batch_size: int, rounds: int, seconds: float) -> None:
    key, cert = pki.issue(wire.HUB_IDENTITY, root / "ca", root / kind, kind)  # type: ignore[arg-type]
    receipts, packets = make_receipts(batch_size), make_packets(batch_size)
    local = LocalSigner.from_files(key, cert)
    with SignerChild(key, cert, processes=1) as child:
        client = SignerClient(child.socket)
        signed = alternate({"in process": lambda: local.sign_receipts(receipts),
                            "socket": lambda: client.sign_receipts(receipts)}, rounds)
        sealed = alternate({"in process": lambda: local.seal_many(packets),
                            "socket": lambda: client.seal_many(packets)}, rounds)
        trip = alternate({"socket": client.certificates}, rounds * 10)["socket"]
    print(f"\naxis key {kind.upper()}, batches of {batch_size}, medians of {rounds} rounds")
    for what, medians in (("sign_receipts", signed), ("seal_many", sealed)):
        inside, through = medians["in process"], medians["socket"]
        print(f"  {what:14s} in process {1000 * inside:7.2f} ms | through the socket {1000 * through:7.2f} ms"
              f" | ratio {through / inside:5.3f} | added {1e6 * (through - inside) / batch_size:6.1f} µs per item")
    print(f"  one round trip, no signing (certificates): {1e6 * trip:.0f} µs")
    cores = os.cpu_count() or 1
    for processes in sorted({1, cores}):
        with SignerChild(key, cert, processes=processes) as child:
            rates = [throughput(child.socket, callers, receipts, seconds) for callers in sorted({1, 2, cores * 2})]
        shown = ", ".join(f"{callers} caller(s) {rate:,.0f}/s"
                          for callers, rate in zip(sorted({1, 2, cores * 2}), rates, strict=True))
        print(f"  receipts signed per second, {processes} signing process(es): {shown}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=100, help="receipts (and packets to seal) per request")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=3.0, help="per throughput figure")
    parser.add_argument("--key-type", choices=["ec", "rsa", "both"], default="both")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(prefix="axis-bench-") as tmp:
        root = Path(tmp)
        pki.init_ca(root / "ca")
        for kind in (["ec", "rsa"] if args.key_type == "both" else [args.key_type]):
            run(kind, root, args.batch, args.rounds, args.seconds)


if __name__ == "__main__":
    main()
