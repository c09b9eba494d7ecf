#!/usr/bin/env bash
# What the tests need beyond the venv: Debian packages for the real peers
# (swaks, BIND, Perl Mail::DKIM, Postfix, OpenDKIM, Chromium, nginx), Node's
# mailauth for Ed25519 verification, and Bluesky's PDS (tests/pds/install.sh;
# a C++ compiler builds its SQLite binding). Installs only what is missing.
#
# The Node side needs only node, npm and a compiler, which a new machine of
# this kind already has: it is fetched and built while apt installs the rest
# (and while make installs the venv), not after.
set -euo pipefail
cd "$(dirname "$0")/../.."

node_side() {
  if [ ! -d tests/verifier/node_modules/mailauth ] || [ ! -d tests/verifier/node_modules/@atproto/xrpc-server ]; then
    (cd tests/verifier && npm ci --no-audit --no-fund --silent 2>/dev/null || npm install --no-audit --no-fund --silent)
  fi
  # Bluesky's own PDS and PLC directory, on the Node 22 they need (a minute or two the first time).
  bash tests/pds/install.sh
}

have() { command -v "$1" >/dev/null; }
node_log=""
if have node && have npm && have g++ && have make; then
  node_log=$(mktemp)
  node_side >"$node_log" 2>&1 &
  node_pid=$!
fi

packages=(swaks bind9 bind9-utils bind9-dnsutils libmail-dkim-perl libnet-dns-perl sqlite3
          postfix opendkim opendkim-tools chromium chromium-driver nodejs npm nginx
          build-essential python3)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node may come from outside Debian (nvm, nodesource), and the compiler may be there without the
# build-essential package; then they are not missing (and apt leaves the Node side's tools alone).
filtered=()
for p in "${missing[@]+"${missing[@]}"}"; do
  case "$p" in
    nodejs|npm) have node && have npm && continue ;;
    build-essential) have g++ && have make && continue ;;
  esac
  filtered+=("$p")
done
missing=("${filtered[@]+"${filtered[@]}"}")
if ((${#missing[@]})); then
  echo "installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq || true
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Debian starts daemons on install; the tests run their own instances on loopback ports.
for svc in named bind9 postfix opendkim nginx; do
  (command -v service >/dev/null && service "$svc" stop >/dev/null 2>&1) || true
done

# Real-world bounces: flufl.bounce's test corpus ships only in its sdist (fetched by the machine's
# pip, so this does not wait for the venv).
corpus=tests/.cache/flufl_bounce
if [ ! -d "$corpus/tests/data" ]; then
  mkdir -p tests/.cache
  tmp=$(mktemp -d)
  pip=(python3 -m pip)
  "${pip[@]}" --version >/dev/null 2>&1 || pip=(.venv/bin/pip)
  "${pip[@]}" download --quiet --disable-pip-version-check --no-deps --no-binary flufl.bounce "flufl.bounce==6.0.0" \
    -d "$tmp" 2>/dev/null
  mkdir -p "$corpus" && tar xzf "$tmp"/flufl_bounce-*.tar.gz -C "$corpus" --strip-components=1
  rm -rf "$tmp"
fi

if [ -n "$node_log" ]; then
  status=0
  wait "$node_pid" || status=$?
  cat "$node_log"
  rm -f "$node_log"
  [ "$status" -eq 0 ] || { echo "installing the Node side failed ($status)" >&2; exit "$status"; }
else
  node_side
fi
