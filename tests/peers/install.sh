#!/usr/bin/env bash
# Installs the real peers of the integration tests: Debian's servers
# (apt, when missing) and the Node clients (npm ci, when the lock changed).
# `make test` runs it before the suite; it is idempotent and quick when
# everything is there.  The Python clients are test extras in setup.cfg.
set -euo pipefail
cd "$(dirname "$0")"

# RabbitMQ (STOMP); prosody (XMPP); a desktop behind a VNC server (Xvfb,
# x11vnc, xterm, xwd from x11-apps); Chromium for noVNC (never a browser
# downloaded by a test tool); iproute2 and nftables for the layered-DMZ
# topology of network namespaces; Prometheus, which scrapes the metrics
# listener; systemd for systemd-analyze and systemd-socket-activate; Redis
# (the shared engine of several instances) and HAProxy in front of them;
# nginx and Squid, the proxies that break WebSocket for the fallback tests;
# OpenLDAP's slapd, the directory of the ldap login module's tests, and its
# command-line clients (ldap-utils: ldapdelete changes it while it runs)
DEBIAN_PACKAGES=(rabbitmq-server prosody lua-unbound xvfb x11vnc xterm x11-apps chromium iproute2 nftables prometheus systemd redis-server haproxy nginx squid slapd ldap-utils)

missing=()
for pkg in "${DEBIAN_PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "tests/peers/install.sh: Debian packages missing: ${missing[*]}; run this script as root" >&2
    exit 1
  fi
  echo "installing ${missing[*]} (apt)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  # the package's own start under systemd/init is not wanted: the tests
  # start each server themselves on free loopback ports
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

stamp=node_modules/.package-lock.sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  npm ci --no-audit --no-fund --silent
  echo "$want" > "$stamp"
fi
