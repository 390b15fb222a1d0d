#!/usr/bin/env bash
# Start router's SIP edge (Kamailio) in the foreground, logging to stderr.
#
#   deploy/sip-edge/run.sh ROUTER_URL EDGE_SECRET SIP_PORT
#
# ROUTER_URL   router's base URL (https://router.example.com)
# EDGE_SECRET  router's ROUTER_SIP_EDGE_SECRET, or `-`: read it from the file EDGE_SECRET_FILE
#              names, else from the first line of stdin (an argument shows in `ps`).
#              Kamailio gets it in its environment only, never on its command line.
# SIP_PORT     the port the edge listens on (UDP and TCP)
#
# Optional environment:
#   EDGE_SECRET_FILE     with EDGE_SECRET `-`: the file holding the secret (first line)
#   EDGE_LISTEN          address to listen on (default 0.0.0.0)
#   EDGE_ADVERTISE       address:port to put in Via/Record-Route when behind NAT
#   EDGE_HTTP_TIMEOUT    seconds to wait for router, whole (default 8: above router's 7.5 s)
#   EDGE_TRUNKS          file of "<source address> <byo-sip-trunk credential id>" lines
#   EDGE_MEDIA_GATEWAY   SIP URI of a media gateway for `stream` runtimes
#   EDGE_PSTN_GATEWAY    host[:port] that number transfers are sent to
#   EDGE_CHILDREN        SIP receiver processes per socket (default 4)
#   EDGE_RUNTIME_DIR     where the pid file and the config go (default: a new temp dir)
#   EDGE_DEBUG           Kamailio log level (default 2: info)
#   KAMAILIO             the kamailio binary (default: the one on PATH, else /usr/sbin)
set -euo pipefail

if [ "$#" -ne 3 ]; then
    echo "usage: $0 ROUTER_URL EDGE_SECRET SIP_PORT" >&2
    exit 2
fi
router_url=${1%/}
secret=$2
port=$3
if [ "$secret" = - ]; then
    if [ -n "${EDGE_SECRET_FILE:-}" ]; then
        secret=$(head -n 1 -- "$EDGE_SECRET_FILE")
    else
        IFS= read -r secret || true
    fi
fi
secret=${secret%$'\r'}
if [ -z "$secret" ]; then
    echo "run.sh: EDGE_SECRET is empty" >&2
    exit 2
fi
case $port in
    '' | *[!0-9]*) echo "run.sh: SIP_PORT must be a number: $port" >&2; exit 2 ;;
esac
case $router_url in
    http://* | https://*) ;;
    *) echo "run.sh: ROUTER_URL must be http:// or https://: $router_url" >&2; exit 2 ;;
esac
timeout=${EDGE_HTTP_TIMEOUT:-8}
case $timeout in
    '' | *[!0-9]* | 0) echo "run.sh: EDGE_HTTP_TIMEOUT must be whole seconds > 0" >&2; exit 2 ;;
esac

here=$(cd "$(dirname "$0")" && pwd)
kamailio=${KAMAILIO:-$(command -v kamailio || echo /usr/sbin/kamailio)}
# Debian's module directory is per architecture (/usr/lib/<triplet>/kamailio/modules).
modules=${KAMAILIO_MODULES:-$(dirname "$(find /usr/lib /usr/local/lib -path '*kamailio/modules/tm.so' -print -quit 2>/dev/null)")}

# Everything Kamailio writes (pid file, the config with its trunks) lives in a directory
# of its own: no /var/run needed, several edges on one host.
runtime=${EDGE_RUNTIME_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/sip-edge.XXXXXX")}
mkdir -p "$runtime"
cp "$here/kamailio.cfg" "$runtime/kamailio.cfg"
: > "$runtime/trunks.cfg"
if [ -n "${EDGE_TRUNKS:-}" ]; then
    # Only addresses and credential ids: the file becomes config statements.
    while read -r address credential rest; do
        case $address in '' | \#*) continue ;; esac
        if ! [[ $address =~ ^[0-9A-Fa-f.:]+$ && $credential =~ ^[A-Za-z0-9._-]+$ && -z $rest ]]; then
            echo "run.sh: bad line in $EDGE_TRUNKS: $address $credential $rest" >&2
            exit 2
        fi
        printf '$sht(trunks=>%s) = "%s";\n' "$address" "$credential" >> "$runtime/trunks.cfg"
    done < "$EDGE_TRUNKS"
fi

export EDGE_ROUTER_URL=$router_url EDGE_SECRET=$secret EDGE_HTTP_TIMEOUT=$timeout
unset EDGE_SECRET_FILE
listen=${EDGE_LISTEN:-0.0.0.0}
advertise=()
if [ -n "${EDGE_ADVERTISE:-}" ]; then
    advertise=(-l "udp:$listen:$port/${EDGE_ADVERTISE}" -l "tcp:$listen:$port/${EDGE_ADVERTISE}")
else
    if [ "$listen" = 0.0.0.0 ]; then
        # Record-Route would name 0.0.0.0: in-dialog requests (the BYE) need a real address
        echo "run.sh: listening on 0.0.0.0 without EDGE_ADVERTISE: set it to the address callers reach" >&2
    fi
    advertise=(-l "udp:$listen:$port" -l "tcp:$listen:$port")
fi

exec "$kamailio" -DD -E \
    -f "$runtime/kamailio.cfg" \
    -L "$modules" \
    -Y "$runtime" -P "$runtime/kamailio.pid" \
    -n "${EDGE_CHILDREN:-4}" \
    --debug="${EDGE_DEBUG:-2}" \
    "${advertise[@]}"
