#!/usr/bin/env bash
# Install the system packages the test suite uses as reference peers.
#
# - LinuxCNC's standalone interpreter `rs274` (package linuxcnc-uspace): the
#   reference the G-code interpreter is compared against.
# - Mosquitto (package mosquitto): the real MQTT broker the edge-to-hub outage tests
#   and benchmarks/ingest.py run against. Tests start their own `mosquitto -c ...` on a
#   free loopback port; the system service is not used (and may stay stopped).
# - Chromium (package chromium): the real browser the web UI tests and
#   benchmarks/ui_latency.py drive through Playwright (executable /usr/bin/chromium;
#   Playwright's own browser download is never used).
# - Node.js and npm (packages nodejs, npm), then node-opcua from npm into
#   ~/.cache/machinetwin/node-opcua: the independent OPC UA stack that
#   tests/protocols/test_opcua_interop.py drives against our server. This step needs no
#   root and runs whenever npm is there.
# - PostgreSQL (package postgresql): the server the PostgreSQL store tests and
#   benchmarks/scale.py run against. Tests make their own cluster with initdb in a
#   temporary folder on a free loopback port (tests/postgres_server.py); the system
#   service is not used. TimescaleDB is not packaged by Debian: the store uses it when
#   the server has it and PostgreSQL's own partitioning otherwise.
#
# Installing needs root and apt-get; without them this script only explains what will
# be skipped, so that `make test` still works on a developer machine. It never fails
# because something is missing: the tests decide (skip, or fail with CI=true).
set -euo pipefail

# command -> apt package that provides it. mosquitto lives in /usr/sbin, which is not
# always on a non-root PATH, so look there too.
declare -A PACKAGE=([rs274]=linuxcnc-uspace [mosquitto]=mosquitto [chromium]=chromium [node]=nodejs [npm]=npm [initdb]=postgresql)
declare -A PURPOSE=(
    [rs274]="tests that compare against LinuxCNC's interpreter"
    [mosquitto]="edge-to-hub tests against a real MQTT broker (tests/hub/test_outage_mosquitto.py)"
    [chromium]="web UI browser tests (tests/ui) and benchmarks/ui_latency.py"
    [node]="OPC UA interoperability tests with node-opcua (tests/protocols/test_opcua_interop.py)"
    [npm]="installing node-opcua for the OPC UA interoperability tests"
    [initdb]="PostgreSQL store tests (tests/hub/test_store*.py) and benchmarks/scale.py"
)

# node-opcua for the OPC UA interoperability test, pinned to the version it was written
# against; the test looks in the same folder (MACHINETWIN_NODE_OPCUA overrides it).
NODE_OPCUA_VERSION=2.182.2
NODE_OPCUA_DIR="${MACHINETWIN_NODE_OPCUA:-$HOME/.cache/machinetwin/node-opcua}"
install_node_opcua() {
    if [[ -d "$NODE_OPCUA_DIR/node_modules/node-opcua" ]]; then
        echo "system-deps: node-opcua found in $NODE_OPCUA_DIR."
        return 0
    fi
    if ! command -v npm >/dev/null 2>&1; then
        echo "system-deps: npm missing: the node-opcua interoperability test will be skipped (fails with CI=true)." >&2
        return 0
    fi
    echo "system-deps: installing node-opcua@$NODE_OPCUA_VERSION into $NODE_OPCUA_DIR ..."
    mkdir -p "$NODE_OPCUA_DIR"
    npm install --no-audit --no-fund --prefix "$NODE_OPCUA_DIR" "node-opcua@$NODE_OPCUA_VERSION" >/dev/null ||
        echo "system-deps: npm install node-opcua failed; the test will say why." >&2
}
trap install_node_opcua EXIT

# Debian keeps PostgreSQL's server programs in /usr/lib/postgresql/VERSION/bin.
have() {
    command -v "$1" >/dev/null 2>&1 || [[ -x "/usr/sbin/$1" ]] ||
        compgen -G "/usr/lib/postgresql/*/bin/$1" >/dev/null
}

missing=()
for cmd in rs274 mosquitto chromium node npm initdb; do
    if have "$cmd"; then
        echo "system-deps: $cmd found; nothing to install for it."
    else
        missing+=("$cmd")
    fi
done
if [[ ${#missing[@]} -eq 0 ]]; then
    exit 0
fi

if [[ "$(id -u)" -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    packages=()
    for cmd in "${missing[@]}"; do packages+=("${PACKAGE[$cmd]}"); done
    echo "system-deps: installing ${packages[*]} with apt-get ..."
    apt-get update -qq
    # policy-rc.d may refuse to start mosquitto's system service in containers; that is
    # fine: the tests never use the service.
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${packages[@]}"
    status=0
    for cmd in "${missing[@]}"; do
        if have "$cmd"; then
            echo "system-deps: $cmd installed."
        else
            echo "system-deps: ${PACKAGE[$cmd]} was installed but $cmd is not on PATH." >&2
            status=1
        fi
    done
    exit "$status"
fi

if [[ "$(id -u)" -ne 0 ]]; then
    reason="not running as root"
else
    reason="apt-get is not available on this system"
fi
for cmd in "${missing[@]}"; do
    cat >&2 <<MSG
system-deps: $cmd (${PACKAGE[$cmd]}) is not installed and cannot be installed here ($reason).
system-deps: ${PURPOSE[$cmd]} will be SKIPPED (with CI=true they FAIL instead).
MSG
done
cat >&2 <<MSG
system-deps: To install on Debian/Ubuntu, run:
system-deps:     sudo make system-deps
MSG
exit 0
