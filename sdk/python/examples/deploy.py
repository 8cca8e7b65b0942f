#!/usr/bin/env python3
"""Lists the member clusters, applies the Workloads in a file and waits until each is
Available everywhere it is placed.

    python3 deploy.py -f web.yaml [--config admin.yaml] [--team TEAM] [--timeout 5m]

Exit codes: 0 all Available, 1 a failure (printed), 2 bad usage.
"""

from __future__ import annotations

import argparse
import sys

import grpc
import yaml

import tether
from tether.client import workloads_in


def duration(text: str) -> float:
    """Seconds from `300`, `90s`, `5m` or `1h`."""
    units = {"s": 1, "m": 60, "h": 3600}
    try:
        if text and text[-1] in units:
            return float(text[:-1]) * units[text[-1]]
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (300, 90s, 5m)") from None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-f", "--filename", required=True, help="a file of Workload documents")
    p.add_argument("--config", help="tetherctl config [default: $TETHER_CONFIG, ~/.tether/config.yaml]")
    p.add_argument("--team", default="", help="the team that owns the workloads")
    p.add_argument("--timeout", type=duration, default=300.0, help="how long to wait per workload: 300, 90s, 5m")
    args = p.parse_args()

    try:
        with open(args.filename) as f:
            workloads = workloads_in(yaml.safe_load_all(f))
    except (OSError, yaml.YAMLError) as e:
        p.error(f"cannot read {args.filename}: {e}")
    if not workloads:
        p.error(f"{args.filename} holds no Workload")

    try:
        with tether.connect(args.config) as hub:
            for c in hub.clusters():
                print(f"cluster {c.name}: {c.status}")
            for w in workloads:
                r = hub.apply(w, team=args.team)
                verb = "unchanged" if not r.changed else ("created" if r.revision == 1 else "configured")
                print(f"workload/{r.name} {verb} (revision {r.revision}, clusters: {', '.join(r.clusters) or 'none'})")
            for w in workloads:
                name = w["metadata"]["name"]
                s = hub.wait_available(name, timeout=args.timeout)
                placed = [c.cluster for c in s.clusters if c.phase == "Available"]
                print(f"workload/{name} revision {s.revision}: Available on {len(placed)} cluster(s): {', '.join(placed)}")
    except tether.ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except tether.NotAvailable as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except grpc.RpcError as e:
        print(f"error: the hub refused: {e.code().name}: {e.details()}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
