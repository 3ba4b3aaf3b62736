#!/bin/sh
# Installs what tests/test_browser.py needs: Debian's Chromium (/usr/bin/chromium) and the
# `playwright` Python package, which drives that Chromium. Playwright's own browser download
# (`playwright install`) is never used. Run it with the project's environment active (the pip of
# that environment installs playwright), as root for apt-get or with sudo available.
set -eu

if [ ! -x /usr/bin/chromium ]; then
    if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium
fi

python -m pip install playwright

/usr/bin/chromium --version
python -c "import playwright.sync_api; print('playwright python package: ok')"
