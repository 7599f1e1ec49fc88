#!/usr/bin/env bash
# Prepare a fresh Debian/Ubuntu checkout: system packages (when root), a virtual
# environment in .venv, and hems installed into it in editable mode with every extra
# the demo and the tests need. Safe to run again; it only does what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

system_packages=(mosquitto socat libsystemd-dev pkg-config gcc python3-dev python3-venv systemd shellcheck)
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    missing=()
    for package in "${system_packages[@]}"; do
        dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "bootstrap: installing ${missing[*]}" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
    # The broker is started per test run by the tests themselves, never as a system service.
    systemctl disable --now mosquitto >/dev/null 2>&1 || true
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
stamp=.venv/.hems-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e ".[test,demo,data,p1,plot]"
    # systemd-python (the journal handler) is compiled against libsystemd; without a compiler or
    # the headers hems logs to stderr, which journald captures just the same.
    .venv/bin/python -m pip install -q -e ".[systemd]" ||
        echo "bootstrap: systemd-python not installed (needs libsystemd-dev, pkg-config, a C compiler); logging to stderr" >&2
    touch "$stamp"
fi
