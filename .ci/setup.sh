#!/bin/sh
# Installs what the tests need beyond the project's Python packages: Debian's Chromium
# (/usr/bin/chromium) and the `playwright` Python package that drives it for tests/test_browser.py
# (playwright's own browser download is never used); redis-server and haproxy for the scale-out
# tests (each test starts its own, on a free port, never the system's). Run it with the project's
# environment active, as root or with sudo available.
set -eu

missing=""
[ -x /usr/bin/chromium ] || missing="$missing chromium"
command -v redis-server >/dev/null 2>&1 || missing="$missing redis-server"
command -v haproxy >/dev/null 2>&1 || missing="$missing haproxy"
if [ -n "$missing" ]; then
    if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing
    # Debian starts the packaged services; the tests never use them, so stop them again.
    for service in redis-server haproxy; do
        $SUDO systemctl stop "$service" 2>/dev/null || $SUDO service "$service" stop 2>/dev/null || true
    done
fi

python -m pip install playwright

/usr/bin/chromium --version
redis-server --version
haproxy -v | head -n 1
python -c "import playwright.sync_api; print('playwright python package: ok')"
