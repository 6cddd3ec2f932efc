#!/usr/bin/env bash
# with-heartbeat.sh AGENT -- CMD...
# Wrap any command in Shipyard's heartbeat (for workflow steps, Makefiles, other shells).
# A thin shim over the Python heartbeat: same arguments, the command's exit code preserved,
# heartbeat lines appended to artifacts/AGENT/<UTC date>/logs/heartbeat.log.
set -euo pipefail
if command -v shipyard >/dev/null 2>&1; then
  exec shipyard heartbeat "$@"
fi
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
for python in "$here/.venv/bin/python" python3; do
  if "$python" -c 'import shipyard' >/dev/null 2>&1; then
    exec "$python" -m shipyard heartbeat "$@"
  fi
done
echo "with-heartbeat.sh: shipyard is not installed (pip install -e '$here')" >&2
exit 2
