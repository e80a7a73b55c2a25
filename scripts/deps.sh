#!/usr/bin/env bash
# Installs the Debian packages twinlane needs to build, test and benchmark, and only those
# that are missing. Safe to run again; runs `apt-get update` once before the first install.
set -euo pipefail

# clang builds the fuzz targets; libclang-rt-dev holds libFuzzer and the sanitizer runtimes
# (clang only recommends it, and recommendations are not installed here).
PKGS=(cmake make gcc pkg-config libmicrohttpd-dev libjansson-dev libsqlite3-dev
      libcmocka-dev python3 python3-pytest clang libclang-rt-dev)
# --bench: what bench/run.sh's scripts use: valgrind (instructions per request) and PostgreSQL
# (the baseline of bench/pg_baseline.sh).
[ "${1:-}" = "--bench" ] && PKGS+=(valgrind postgresql)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
