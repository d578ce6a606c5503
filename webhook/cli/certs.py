"""``pullguard certs``: write a CA and a serving certificate for a Service.

Argument checking and printing; the certificates are made by :mod:`webhook.edge.certs`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from webhook.cli.options import SubParsers


def register(sub: SubParsers) -> None:
    certs = sub.add_parser("certs", help="write a CA and a serving certificate")
    certs.add_argument("--service", required=True)
    certs.add_argument("--namespace", required=True)
    certs.add_argument("--out", type=Path, default=Path("certs"))
    certs.add_argument(
        "--host",
        action="append",
        default=[],
        metavar="NAME",
        help="another DNS name the certificate is valid for (repeatable): pullguard run "
        "outside the cluster and registered by URL",
    )
    certs.add_argument(
        "--ip",
        action="append",
        default=[],
        metavar="ADDRESS",
        help="an IP address the certificate is valid for (repeatable)",
    )
    certs.set_defaults(func=cmd_certs)


def cmd_certs(args: argparse.Namespace) -> int:
    import ipaddress

    from webhook.edge.certs import make_bundle, service_dns_names

    for address in args.ip:
        try:
            ipaddress.ip_address(address)
        except ValueError:
            print(f"pullguard certs: --ip {address!r} is not an IP address", file=sys.stderr)
            return 2
    names = service_dns_names(args.service, args.namespace) + list(args.host)
    paths = make_bundle(names, list(args.ip)).write(args.out)
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0
