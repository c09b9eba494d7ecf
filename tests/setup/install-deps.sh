#!/usr/bin/env bash
# What the tests need beyond the venv: Debian packages for the real peers
# (swaks, BIND, Perl Mail::DKIM, Postfix, OpenDKIM, Chromium, nginx), Node's
# mailauth for Ed25519 verification, and Bluesky's PDS (tests/pds/install.sh;
# build-essential compiles its SQLite binding). Installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/../.."

packages=(swaks bind9 bind9-utils bind9-dnsutils libmail-dkim-perl libnet-dns-perl sqlite3
          postfix opendkim opendkim-tools chromium chromium-driver nodejs npm nginx
          build-essential python3)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node may come from outside Debian (nvm, nodesource); then it is not missing.
if command -v node >/dev/null && command -v npm >/dev/null; then
  filtered=()
  for p in "${missing[@]}"; do [[ "$p" == nodejs || "$p" == npm ]] || filtered+=("$p"); done
  missing=("${filtered[@]+"${filtered[@]}"}")
fi
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

if [ ! -d tests/verifier/node_modules/mailauth ] || [ ! -d tests/verifier/node_modules/@atproto/xrpc-server ]; then
  (cd tests/verifier && npm ci --no-audit --no-fund --silent 2>/dev/null || npm install --no-audit --no-fund --silent)
fi

# Real-world bounces: flufl.bounce's test corpus ships only in its sdist.
corpus=tests/.cache/flufl_bounce
if [ ! -d "$corpus/tests/data" ]; then
  mkdir -p tests/.cache
  tmp=$(mktemp -d)
  .venv/bin/pip download --quiet --no-deps --no-binary :all: "flufl.bounce==6.0.0" -d "$tmp" 2>/dev/null
  mkdir -p "$corpus" && tar xzf "$tmp"/flufl_bounce-*.tar.gz -C "$corpus" --strip-components=1
  rm -rf "$tmp"
fi

# Bluesky's own PDS and PLC directory, on the Node 22 they need (a few minutes the first time).
bash tests/pds/install.sh
