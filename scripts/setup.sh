# Sourced by ./run-demo and ./run-tests: installs what Ping needs, idempotently.
#   setup_ping [--test]
# Python deps go into .venv (unless a virtualenv is active or PING_NO_VENV=1),
# JS deps into node_modules (npm ci), then build.py assembles dist/.
# Afterwards $PY is the Python to use.

die() { echo "error: $*" >&2; exit 1; }

setup_ping() {
  local build_args=()
  [ "${1:-}" = "--test" ] && build_args=(--test)
  cd "$ROOT"

  local base=${PYTHON:-python3}
  command -v "$base" >/dev/null || die "python3 not found: install Python 3.11 or newer"
  "$base" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "Python 3.11 or newer is needed ($("$base" --version 2>&1) found)"
  if [ -n "${VIRTUAL_ENV:-}" ] || [ -n "${PING_NO_VENV:-}" ]; then
    PY=$(command -v "$base")
  else
    if [ ! -x .venv/bin/python ]; then
      echo "setup: creating .venv"
      "$base" -m venv .venv
    fi
    PY=$ROOT/.venv/bin/python
  fi
  # Reinstall only when pyproject.toml (or the extras) changed since the last install.
  local extras="server,test,postgres,interop"
  local stamp_file
  stamp_file="$("$PY" -c 'import sys; print(sys.prefix)')/.ping-installed"
  local want
  want="$( { cat pyproject.toml; echo "$extras"; } | sha256sum | cut -c1-64)"
  if [ "$(cat "$stamp_file" 2>/dev/null)" != "$want" ]; then
    echo "setup: pip install -e '.[$extras]'"
    "$PY" -m pip install --quiet --disable-pip-version-check -e ".[$extras]"
    echo "$want" > "$stamp_file"
  fi

  command -v node >/dev/null || die "node not found: install Node.js 20 or newer"
  node -e 'process.exit(Number(process.versions.node.split(".")[0]) < 20 ? 1 : 0)' \
    || die "Node.js 20 or newer is needed ($(node --version) found)"
  if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    echo "setup: npm ci"
    npm ci --no-audit --no-fund --loglevel=error
  fi

  # Test folders with JS dependencies of their own (e.g. tests/interop: ts-mls).
  local lock
  for lock in tests/*/package-lock.json; do
    [ -f "$lock" ] || continue
    local dir
    dir=$(dirname "$lock")
    if [ ! -f "$dir/node_modules/.package-lock.json" ] || [ "$lock" -nt "$dir/node_modules/.package-lock.json" ]; then
      echo "setup: npm ci --prefix $dir"
      npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error
    fi
  done

  "$PY" build.py "${build_args[@]}"
}
