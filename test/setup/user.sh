#!/usr/bin/env bash
# Creates the regular user the regular-user VM tests run mkt as (root only; idempotent).
set -euo pipefail
user=${MKT_TEST_USER:-mkt-test-user}
[[ $(id -u) == 0 ]] || exit 0
id "$user" >/dev/null 2>&1 || useradd --create-home --shell /bin/bash "$user"
