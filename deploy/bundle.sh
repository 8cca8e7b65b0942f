#!/usr/bin/env bash
# The air-gapped bundle: release binaries, both Helm charts, the systemd unit, the image build
# file, an offline install guide and SHA-256 checksums, in one tarball to carry in by hand.
#
#   ./deploy/bundle.sh                       # builds release binaries, writes target/bundle/
#   ./deploy/bundle.sh --bin-dir DIR --out DIR
#
# Installing from the bundle needs no network: see deploy/INSTALL-offline.md (INSTALL.md in
# the bundle).
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { echo "usage: deploy/bundle.sh [--bin-dir DIR] [--out DIR]" >&2; exit 2; }
bin_dir=""
out=target/bundle
while [ $# -gt 0 ]; do
  case "$1" in
    --bin-dir) [ $# -ge 2 ] || usage; bin_dir=$2; shift 2 ;;
    --out) [ $# -ge 2 ] || usage; out=$2; shift 2 ;;
    -h|--help) usage ;;
    *) echo "error: unknown argument $1" >&2; usage ;;
  esac
done

if [ -z "$bin_dir" ]; then
  cargo build --release --locked -p tether-hub -p tetherctl -p tether-agent --bins
  bin_dir=target/release
fi
for b in tether-hub tetherctl tether-agent; do
  [ -x "$bin_dir/$b" ] || { echo "error: $bin_dir/$b is missing (build it, or pass --bin-dir)" >&2; exit 1; }
done

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
name="tether-${version}-linux-$(uname -m)"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root="$stage/$name"
mkdir -p "$root/bin" "$root/charts" "$root/images" "$root/systemd"

install -m 0755 "$bin_dir/tether-hub" "$bin_dir/tetherctl" "$bin_dir/tether-agent" "$root/bin/"
cp -R deploy/helm/tether-hub deploy/helm/tether-agent "$root/charts/"
install -m 0644 deploy/systemd/tether-hub.service "$root/systemd/"
install -m 0644 deploy/Dockerfile "$root/images/Dockerfile"
install -m 0644 deploy/images-README.md "$root/images/README.md"
install -m 0644 deploy/INSTALL-offline.md "$root/INSTALL.md"

# Checksums of every file, verified on site with `sha256sum -c SHA256SUMS`.
(cd "$root" && find . -type f ! -name SHA256SUMS -print0 | LC_ALL=C sort -z \
  | xargs -0 sha256sum | sed 's# \./# #' > SHA256SUMS)

mkdir -p "$out"
tar -C "$stage" --owner=0 --group=0 --numeric-owner -czf "$out/$name.tar.gz" "$name"
(cd "$out" && sha256sum "$name.tar.gz" > "$name.tar.gz.sha256")
echo "$out/$name.tar.gz"
