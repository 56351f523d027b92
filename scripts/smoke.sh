#!/usr/bin/env bash
# scripts/smoke.sh: after an install, a short aws CLI round trip against a running s3vol:
# put an object, list it, get it back and compare, delete it, and check it is gone.
#
#   scripts/smoke.sh --endpoint URL --bucket NAME [--admin URL]
#                    [--credentials FILE [--key-name NAME]]
#
#   --endpoint URL      the S3 endpoint, e.g. http://127.0.0.1:9000
#   --bucket NAME       a volume the key may read, write and delete in
#   --admin URL         also check GET URL/health and URL/ready (e.g. http://127.0.0.1:9001)
#   --credentials FILE  take the key from an s3vol credentials file (the first [[key]],
#                       or the one named by --key-name); otherwise the usual
#                       AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY environment applies
#
# Prints one line per step and `smoke: ok` at the end; exits non-zero at the first
# failure. The object is written under `s3vol-smoke/` and removed again.
set -euo pipefail

endpoint="" bucket="" admin="" credentials="" key_name=""
while (($#)); do
    case "$1" in
        --endpoint) endpoint="${2:?}"; shift 2 ;;
        --bucket) bucket="${2:?}"; shift 2 ;;
        --admin) admin="${2:?}"; shift 2 ;;
        --credentials) credentials="${2:?}"; shift 2 ;;
        --key-name) key_name="${2:?}"; shift 2 ;;
        -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "smoke.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
done
[[ -n "$endpoint" && -n "$bucket" ]] || { echo "smoke.sh: --endpoint and --bucket are required" >&2; exit 2; }
command -v aws >/dev/null || { echo "smoke.sh: the aws CLI is not installed" >&2; exit 2; }

if [[ -n "$credentials" ]]; then
    # The fields of the first [[key]] table (or the one whose name is --key-name).
    field() { # POSIX awk: mawk has no match() captures
        awk -v want="$key_name" -v f="$1" '
            /^\[\[key\]\]/ { n++; name = ""; val = ""; next }
            {
                line = $0
                if (line !~ /^[ \t]*[a-z_]+[ \t]*=[ \t]*"/) next
                k = line; sub(/^[ \t]*/, "", k); sub(/[ \t]*=.*/, "", k)
                v = line; sub(/^[^"]*"/, "", v); sub(/".*/, "", v)
                if (k == "name") name = v
                if (k == f) val = v
                if ((want == "" ? n == 1 : name == want) && val != "") { print val; exit }
            }' "$credentials"
    }
    AWS_ACCESS_KEY_ID="$(field access_key)"
    AWS_SECRET_ACCESS_KEY="$(field secret_key)"
    [[ -n "$AWS_ACCESS_KEY_ID" && -n "$AWS_SECRET_ACCESS_KEY" ]] \
        || { echo "smoke.sh: no key${key_name:+ named $key_name} in $credentials" >&2; exit 2; }
    export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
fi
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}" AWS_EC2_METADATA_DISABLED=true
export AWS_PAGER=""

work="$(mktemp -d "${TMPDIR:-/tmp}/s3vol-smoke.XXXXXX")"
trap 'rm -rf "$work"' EXIT
step() { printf 'smoke: %s\n' "$*"; }
s3() { aws --endpoint-url "$endpoint" "$@"; }

if [[ -n "$admin" ]]; then
    curl -fsS "$admin/health" >/dev/null && step "health ok"
    curl -fsS "$admin/ready" >/dev/null && step "ready ok"
fi

key="s3vol-smoke/$(date +%s)-$$.bin"
head -c 1048576 /dev/urandom >"$work/up.bin"
s3 s3 cp --only-show-errors "$work/up.bin" "s3://$bucket/$key" && step "put s3://$bucket/$key"
s3 s3 ls "s3://$bucket/s3vol-smoke/" | grep -q "$(basename "$key")" && step "listed"
s3 s3 cp --only-show-errors "s3://$bucket/$key" "$work/down.bin"
cmp -s "$work/up.bin" "$work/down.bin" || { echo "smoke: FAILED: the object read back differs" >&2; exit 1; }
step "got it back, same bytes"
s3 s3 rm --only-show-errors "s3://$bucket/$key" && step "deleted"
if s3 s3api head-object --bucket "$bucket" --key "$key" >/dev/null 2>&1; then
    echo "smoke: FAILED: the object is still there after delete" >&2
    exit 1
fi
step "gone"
echo "smoke: ok"
