#!/usr/bin/env bash
# Installs everything ctop, its demo and its tests need: Debian packages (as root) and a venv in .venv.
# Idempotent and quick when nothing is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

mapfile -t pkgs < <(grep -v -E '^\s*(#|$)' .ci/apt-packages.txt)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup: missing Debian packages (run as root to install): ${missing[*]}" >&2
    else
        echo "setup: installing Debian packages: ${missing[*]}"
        apt-get update -qq
        if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
                "${missing[@]}" >/dev/null; then
            # inn2's post-install refuses a host name without a domain (fresh VMs and
            # containers): give INN a domain and finish configuring what was unpacked.
            if [ -f /etc/news/inn.conf ] && ! grep -q '^domain:' /etc/news/inn.conf; then
                sed -i 's/^#domain:.*/domain: localdomain/' /etc/news/inn.conf
            fi
            DEBIAN_FRONTEND=noninteractive dpkg --configure -a
        fi
    fi
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
stamp=.venv/.ctop-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q -e '.[director,test]'  # the UI (director extra) and the tests
    touch "$stamp"
fi
