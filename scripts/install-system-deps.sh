#!/usr/bin/env bash
# Install the system packages the test suite uses as reference peers.
#
# LinuxCNC's standalone interpreter `rs274` (package linuxcnc-uspace) is the
# reference the G-code interpreter is compared against. Installing it needs
# root; without root this script only explains what will be skipped, so that
# `make test` still works on a developer machine.
set -euo pipefail

if command -v rs274 >/dev/null 2>&1; then
    echo "system-deps: rs274 (LinuxCNC) found at $(command -v rs274); nothing to install."
    exit 0
fi

if [[ "$(id -u)" -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "system-deps: installing linuxcnc-uspace (provides rs274) with apt-get ..."
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends linuxcnc-uspace
    if ! command -v rs274 >/dev/null 2>&1; then
        echo "system-deps: linuxcnc-uspace was installed but rs274 is not on PATH." >&2
        exit 1
    fi
    echo "system-deps: rs274 installed at $(command -v rs274)."
    exit 0
fi

if [[ "$(id -u)" -ne 0 ]]; then
    reason="not running as root"
else
    reason="apt-get is not available on this system"
fi
cat >&2 <<MSG
system-deps: rs274 (LinuxCNC) is not installed and cannot be installed here ($reason).
system-deps: tests that compare against LinuxCNC's interpreter will be SKIPPED
system-deps: (with CI=true they FAIL instead). To install it on Debian/Ubuntu, run:
system-deps:     sudo make system-deps
MSG
exit 0
