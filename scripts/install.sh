#!/usr/bin/env bash
# scripts/install.sh: installs s3vol as a systemd service, or removes it. Idempotent:
# running it again updates the binary and the unit and leaves the operator's config and
# credentials alone.
#
#   scripts/install.sh [--binary FILE] [--prefix DIR] [--user NAME] [--credentials FILE]
#   scripts/install.sh --uninstall [--purge] [--prefix DIR]
#
# What goes where (under DIR when --prefix or DESTDIR is given):
#   /usr/local/bin/s3vol                      0755 root:root  the binary
#   /etc/systemd/system/s3vol.service         0644 root:root  systemd/s3vol.service
#   /etc/systemd/system/s3vol.service.d/volumes.conf
#                                             0644 root:root  RequiresMountsFor= and
#                                             ReadWritePaths= for every volume path in the config
#   /etc/s3vol/                               0750 root:USER
#   /etc/s3vol/s3vol.toml                     0640 root:USER  only when missing (from systemd/s3vol.toml)
#   /etc/s3vol/s3vol.toml.example             0640 root:USER  always the latest example
#   /etc/s3vol/credentials.toml               0600 USER:USER  only when missing: --credentials FILE,
#                                             or a generated key (its access key is printed)
#   /usr/local/share/doc/s3vol/README.md      0644 root:root
#
# Options:
#   --binary FILE       install this binary instead of building one (`cargo build --release`)
#   --prefix DIR        install beneath DIR instead of / (also: DESTDIR=DIR); no user is
#                       created and systemctl is not run, so CI can install into a temp dir
#                       and a package build can stage its files
#   --user NAME         the account s3vol runs as (default s3vol; created as a system user
#                       when missing). Under a prefix where it does not exist (a package
#                       build), files stay root:root, no key is generated, and the
#                       commands that set owners are printed for the package's install
#                       step (its postinst; packaging/deb/postinst does this for the .deb)
#   --credentials FILE  the credentials file to install when none is installed yet
#   --uninstall         remove the binary, the unit and its drop-in (config and
#                       credentials stay, unless --purge)
#   --purge             with --uninstall: remove /etc/s3vol too
#
# After a real install (no prefix): systemctl daemon-reload, and a hint to
# `systemctl enable --now s3vol`; the service is never started or restarted by this script.
set -euo pipefail

root_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
prefix="${DESTDIR:-}"
binary=""
user="s3vol"
credentials=""
uninstall=0
purge=0

die() { echo "install.sh: $*" >&2; exit 1; }

while (($#)); do
    case "$1" in
        --binary) binary="${2:?--binary needs a file}"; shift 2 ;;
        --prefix) prefix="${2:?--prefix needs a directory}"; shift 2 ;;
        --user) user="${2:?--user needs a name}"; shift 2 ;;
        --credentials) credentials="${2:?--credentials needs a file}"; shift 2 ;;
        --uninstall) uninstall=1; shift ;;
        --purge) purge=1; shift ;;
        -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
done

[[ -z "$prefix" || "$prefix" == /* ]] || prefix="$(pwd)/$prefix"
prefix="${prefix%/}"
bin="$prefix/usr/local/bin/s3vol"
unit_dir="$prefix/etc/systemd/system"
unit="$unit_dir/s3vol.service"
dropin_dir="$unit_dir/s3vol.service.d"
etc="$prefix/etc/s3vol"
doc="$prefix/usr/local/share/doc/s3vol"
real_root=0
[[ -z "$prefix" ]] && real_root=1

[[ "$(id -u)" == 0 ]] || die "run as root (it sets owners); for a test install use --prefix as root"

systemd_running() { ((real_root)) && [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null; }

if ((uninstall)); then
    if systemd_running && systemctl is-active --quiet s3vol 2>/dev/null; then
        systemctl stop s3vol
    fi
    if systemd_running; then
        systemctl disable s3vol 2>/dev/null || true
    fi
    rm -f "$bin" "$unit" "$dropin_dir/volumes.conf"
    rmdir "$dropin_dir" 2>/dev/null || true
    rm -rf "$doc"
    if ((purge)); then
        rm -rf "$etc"
        echo "removed s3vol, its unit and $etc"
    else
        echo "removed s3vol and its unit; kept $etc (use --purge to remove it)"
    fi
    systemd_running && systemctl daemon-reload
    exit 0
fi

# ---------------------------------------------------------------- the account
# owner/group: who the config and credentials belong to here. A package build (a prefix,
# no such user on the build machine) leaves them root's and the owners to its install step.
staged=0
if getent passwd "$user" >/dev/null; then
    owner="$user"
    group="$(id -gn "$user")"
elif ((real_root)); then
    useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$user"
    echo "created system user $user"
    owner="$user"
    group="$(id -gn "$user")"
else
    staged=1
    owner=root
    group=root
    echo "user $user does not exist here: files stay root:root; the package's install step must run:"
    echo "  useradd --system --user-group --no-create-home --shell /usr/sbin/nologin $user"
    echo "  chown root:$user /etc/s3vol /etc/s3vol/s3vol.toml /etc/s3vol/s3vol.toml.example"
    echo "  chown $user:$user /etc/s3vol/credentials.toml   # once it has one (none is generated here)"
fi

# ---------------------------------------------------------------- the binary
if [[ -z "$binary" ]]; then
    command -v cargo >/dev/null || die "no --binary given and cargo is not installed"
    (cd "$root_dir" && cargo build --release --locked)
    binary="$root_dir/target/release/s3vol"
fi
[[ -x "$binary" ]] || die "$binary is not an executable"
"$binary" --version >/dev/null || die "$binary does not run"

install -d -m 0755 "$(dirname "$bin")" "$unit_dir" "$dropin_dir" "$doc"
# install(1) writes a new file and renames it: a running daemon keeps its old binary.
install -m 0755 -o root -g root "$binary" "$bin"
install -m 0644 -o root -g root "$root_dir/systemd/s3vol.service" "$unit"
install -m 0644 -o root -g root "$root_dir/README.md" "$doc/README.md"
if [[ "$user" != s3vol ]]; then
    # The account's group; staged (no account here), the group useradd --user-group makes.
    unit_group="$group"
    ((staged)) && unit_group="$user"
    sed -i "s/^User=s3vol$/User=$user/; s/^Group=s3vol$/Group=$unit_group/" "$unit"
fi

# ---------------------------------------------------------------- config and credentials
install -d -m 0750 -o root -g "$group" "$etc"
install -m 0640 -o root -g "$group" "$root_dir/systemd/s3vol.toml" "$etc/s3vol.toml.example"
if [[ ! -e "$etc/s3vol.toml" ]]; then
    install -m 0640 -o root -g "$group" "$root_dir/systemd/s3vol.toml" "$etc/s3vol.toml"
    echo "installed the example config $etc/s3vol.toml: edit its volumes, then check it"
fi
if [[ -L "$etc/credentials.toml" ]]; then
    # Never written or chowned through a link (it may lead anywhere, or nowhere yet).
    echo "$etc/credentials.toml is a symbolic link: left as it is, no key generated" >&2
elif [[ ! -e "$etc/credentials.toml" ]]; then
    if [[ -n "$credentials" ]]; then
        install -m 0600 -o "$owner" -g "$group" "$credentials" "$etc/credentials.toml"
    elif ((staged)); then
        echo "no credentials generated under a package build: a secret must not ship in a package"
    else
        ak="S3VOL$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n' | tr a-f A-F)"
        sk="$(head -c 30 /dev/urandom | od -An -tx1 | tr -d ' \n')"
        tmp="$(umask 077 && mktemp "$etc/.credentials.XXXXXX")"
        cat >"$tmp" <<EOF
# s3vol access keys (one [[key]] table each); reload with: systemctl reload s3vol
[[key]]
name = "admin"
access_key = "$ak"
secret_key = "$sk"
volumes = ["*"]
permissions = ["read", "write", "delete"]
EOF
        mv -T "$tmp" "$etc/credentials.toml" # replaces a name, never writes through one
        chown "$owner:$group" "$etc/credentials.toml"
        chmod 0600 "$etc/credentials.toml"
        echo "generated a key \"admin\" with access key $ak (secret in $etc/credentials.toml)"
    fi
else
    # Repair owner and mode: s3vol refuses credentials that others can read.
    chown "$owner:$group" "$etc/credentials.toml"
    chmod 0600 "$etc/credentials.toml"
fi

# ---------------------------------------------------------------- the volumes drop-in
# Every volume path (and volumes_root) of the installed config: the unit waits for its
# mount and may write there (ProtectSystem=strict makes everything else read-only).
mapfile -t paths < <(sed -n -E 's/^[[:space:]]*(path|volumes_root)[[:space:]]*=[[:space:]]*"([^"]+)".*/\2/p' "$etc/s3vol.toml")
{
    echo "# Written by scripts/install.sh from $([[ -n "$prefix" ]] && echo "${etc#"$prefix"}" || echo "$etc")/s3vol.toml;"
    echo "# run it again after changing the volumes."
    echo "[Unit]"
    if ((${#paths[@]})); then echo "RequiresMountsFor=${paths[*]}"; fi
    echo "[Service]"
    if ((${#paths[@]})); then echo "ReadWritePaths=${paths[*]}"; fi
} >"$dropin_dir/volumes.conf"
chmod 0644 "$dropin_dir/volumes.conf"

# ---------------------------------------------------------------- check
if ((staged)) && [[ ! -e "$etc/credentials.toml" ]]; then
    echo "check-config skipped: no credentials yet (the package's install step makes them)"
elif ! "$bin" check-config --config "$etc/s3vol.toml" --credentials "$etc/credentials.toml" >/dev/null; then
    echo "install.sh: warning: $etc/s3vol.toml does not pass check-config yet (see above); fix it before starting" >&2
fi

if systemd_running; then
    systemctl daemon-reload
    echo "installed; start with: systemctl enable --now s3vol"
else
    echo "installed into ${prefix:-/}"
fi
