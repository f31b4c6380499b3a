#!/usr/bin/env bash
# Run one test tier. pytest exits 5 when it collected nothing: that is neither a pass nor a
# test failure, so it is reported by name and fails the tier.
set -uo pipefail
tier=$1; expr=$2; shift 2  # any further arguments go to pytest (e.g. -n 2 --dist loadfile)
cd "$(dirname "$0")/.."
.venv/bin/python -m pytest -m "$expr" -q --durations=12 "$@"
rc=$?
if [ $rc -eq 5 ]; then
  echo "tier '$tier': pytest collected no tests for -m \"$expr\"; failing so this is not read as a pass" >&2
  exit 1
fi
exit $rc
