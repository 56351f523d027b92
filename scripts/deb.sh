#!/usr/bin/env bash
# scripts/deb.sh: builds the s3vol .deb with cargo-deb (`[package.metadata.deb]` in
# Cargo.toml): the binary as /usr/bin/s3vol, the unit (systemd/s3vol.service with its
# paths moved from /usr/local to /usr) as /lib/systemd/system/s3vol.service, the example
# config as the conffile /etc/s3vol/s3vol.toml, the README and the Grafana dashboard in
# /usr/share/doc/s3vol, and packaging/deb/{postinst,prerm,postrm} (the service account
# s3vol, owners, a generated key when none is installed).
#
#   scripts/deb.sh [--profile release|dev] [--no-build] [--binary FILE] [--output DIR]
#                  [-- cargo-deb args]
#
#   --profile   release (default): `cargo build --release --locked`, then package it.
#               dev: package target/debug/s3vol (stripped), as CI does: a release build
#               costs CI minutes; the package's layout and scripts are the same.
#   --no-build  package what is already built for the profile.
#   --binary    package this prebuilt binary (no build; stripped as for --profile dev
#               unless --profile release).
#   --output    where the .deb goes (default target/debian). Prints its path last.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
profile=release
build=1
binary=""
output=target/debian
while (($#)); do
    case "$1" in
        --profile) profile="${2:?--profile needs release or dev}"; shift 2 ;;
        --no-build) build=0; shift ;;
        --binary) binary="${2:?--binary needs a file}"; build=0; shift 2 ;;
        --output) output="${2:?--output needs a directory}"; shift 2 ;;
        --) shift; break ;;
        -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "deb.sh: unknown argument: $1" >&2; exit 1 ;;
    esac
done
command -v cargo-deb >/dev/null || { echo "deb.sh: cargo-deb is missing: cargo install cargo-deb --locked" >&2; exit 1; }

if ((build)); then
    case "$profile" in
        release) cargo build --release --locked ;;
        dev) cargo build --locked ;;
        *) cargo build --locked --profile "$profile" ;;
    esac
fi

# The unit as a package installs it: binary and documentation under /usr, not /usr/local.
mkdir -p target/deb
sed -e 's|/usr/local/bin/s3vol|/usr/bin/s3vol|g' -e 's|/usr/local/share/doc/s3vol|/usr/share/doc/s3vol|g' \
    systemd/s3vol.service >target/deb/s3vol.service
grep -q '/usr/local' target/deb/s3vol.service && grep -n '/usr/local' target/deb/s3vol.service >&2 &&
    { echo "deb.sh: the unit still names /usr/local" >&2; exit 1; }

# The binary the package carries, taken from the profile's build (cargo-deb packages a
# prebuilt path): a debug build is mostly debug info, so it is stripped and compressed fast.
case "$profile" in
    release) built=target/release/s3vol ;;
    dev) built=target/debug/s3vol ;;
    *) built="target/$profile/s3vol" ;;
esac
[[ -n "$binary" ]] && built="$binary"
[[ -x "$built" ]] || { echo "deb.sh: $built is not built (drop --no-build)" >&2; exit 1; }
args=(--no-build --output "$output")
if [[ "$profile" == dev ]]; then
    strip -o target/deb/s3vol "$built"
    args+=(--fast)
else
    cp "$built" target/deb/s3vol
fi
target/deb/s3vol --version >/dev/null

mkdir -p "$output"
cargo deb "${args[@]}" "$@" | tail -n 1
