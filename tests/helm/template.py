#!/usr/bin/env python3
"""`helm template` with real Helm (the Helm Go SDK, through the PyPI package helm-python-sdk,
as check_charts.py uses it): renders CHART and prints every manifest as `helm template` does,
one `---` document per template with a `# Source:` comment, so the tests can pipe real Helm
output into `tetherctl workload create NAME --from -`.

Usage: template.py RELEASE CHART [--namespace NS] [--set KEY=VALUE]...
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import helm_python as helm
import yaml


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("release")
    p.add_argument("chart", type=pathlib.Path)
    p.add_argument("--namespace", "-n", default="default")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args()
    values = yaml.safe_load((args.chart / "values.yaml").read_text()) or {}
    for kv in args.set:
        key, _, value = kv.partition("=")
        node = values
        *parents, leaf = key.split(".")
        for k in parents:
            node = node.setdefault(k, {})
        node[leaf] = yaml.safe_load(value)
    chart = helm.Chart.load(args.chart)
    out = chart.render(values, name=args.release, namespace=args.namespace, is_install=True)
    for path, text in sorted(out.items()):
        if path.endswith("NOTES.txt") or not text.strip():
            continue
        sys.stdout.write(f"---\n# Source: {path}\n{text.rstrip()}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
