"""A worker's memory under the decoded-size attack of issue 20 (F4), measured.

Reviews of a Pod whose image is on a registry that never answers (so each is held, decoded,
for ``registry.timeoutSeconds``), padded with an unknown field of ``[{},{},...]`` to
``--mib`` MiB, are sent ``--at-once`` at a time for ``--rounds`` rounds through
``pullguard serve --dev`` (one worker, the real gunicorn over TLS). The worker's peak RSS
(``VmHWM`` in /proc) is printed before and after, with the answers' status codes, and
one body's estimate (``core.review.decoded_cost``, what the budget reserves) beside what
its decode takes here by tracemalloc (held once it returns, and the peak, orjson's parse
buffer or the standard library's ``str`` of the body included), through ``decode_json``
(the decoder the worker uses for that body).

Prints figures; asserts nothing. The target: the worker's peak stays under 200 MiB (the pod
limit is 384 MiB; before the fix four at once took a worker to 560 MiB).

Run: python benchmarks/decode_memory.py [--mib 6.8] [--at-once 4] [--rounds 2]
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import stop_server  # noqa: E402
from tests.integration.test_load import _workers  # noqa: E402
from tests.integration.test_port_attacks import (  # noqa: E402
    _decoding_server,
    _held_review,
    _peak_rss_mib,
    _post_all,
)


def _estimate_and_decode(body: bytes) -> str:
    import gc
    import tracemalloc

    from webhook.core.review import decode_json, decoded_cost

    gc.collect()
    tracemalloc.start()
    document = decode_json(body)
    held, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del document
    return (
        f"one body: estimate {decoded_cost(body) / 2**20:.1f} MiB, decode held "
        f"{held / 2**20:.1f} MiB, peak {peak / 2**20:.1f} MiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=float, default=6.8, help="size of each body")
    parser.add_argument("--at-once", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--filler", default="{},", help="the repeated JSON of the padding")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        server, hang, image = _decoding_server(Path(folder))
        try:
            (worker,) = _workers(server)
            before = _peak_rss_mib(worker)
            size = int(args.mib * 2**20)
            filler = args.filler.encode()
            codes: collections.Counter[int] = collections.Counter()
            measured = _estimate_and_decode(_held_review("one", image, filler, size))
            for round_number in range(args.rounds):
                bodies = [
                    _held_review(f"r{round_number}-{n}", image, filler, size)
                    for n in range(args.at_once)
                ]
                codes.update(reply.status_code for reply in _post_all(server, bodies))
            after = _peak_rss_mib(worker)
        finally:
            hang.stop()
            stop_server(server)
    print(
        f"{args.rounds} rounds of {args.at_once} reviews of {args.mib} MiB of {args.filler!r}: "
        f"worker peak RSS {before:.1f} MiB before, {after:.1f} MiB after; answers "
        + ", ".join(f"{count} x {code}" for code, count in sorted(codes.items()))
        + f"; {measured}"
    )


if __name__ == "__main__":
    main()
