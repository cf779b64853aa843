#!/usr/bin/env bash
# The whole test suite, as `npm test` runs it: build, unit tests (pure parts
# and process handling with fake qemus), real VM boots of the test kernel and
# of the installed distro kernel under TCG, then the black-box acceptance
# checks when ../shared/acceptance is there.
set -euo pipefail
cd "$(dirname "$0")/.."
npm run -s build
npx tsc -p tsconfig.test.json
export MKT_ACCEL=${MKT_ACCEL:-tcg}
MKT_KTREE=$(test/setup/test-kernel.sh)
export MKT_KTREE
test/setup/user.sh
if ! ls /boot/vmlinuz-* >/dev/null 2>&1; then
  echo "run-all: no /boot/vmlinuz-*: apt-get install linux-image-amd64 (scripts/setup.sh does)" >&2
  exit 1
fi
status=0
node --test --test-concurrency=1 --test-timeout=900000 dist-test/test/unit/ dist-test/test/vm/ || status=1
acc=../shared/acceptance/run-core.sh
if [[ -x $acc ]]; then
  # once per filesystem; virtiofs needs root with Debian's virtiofsd
  fss=(9p)
  [[ $(id -u) != 0 ]] || fss+=(virtiofs)
  for fs in "${fss[@]}"; do
    echo "== acceptance ($fs): $acc"
    MKT_FS=$fs "$acc" || status=1
  done
else
  echo "== acceptance: $acc not found (it lives beside the checkout in the project workspace); not run"
fi
left=$(pgrep -fc '^[^ ]*(qemu-system-x86_64|virtiofsd)' || true)
if [[ $left != 0 ]]; then
  echo "run-all: $left qemu/virtiofsd processes left running after the tests" >&2
  status=1
fi
exit $status
