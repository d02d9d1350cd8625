#!/usr/bin/env bash
# The container image's build steps: the Dockerfile's RUN lines call this script, and CI runs
# the same commands without containers (this machine has no container engine).
#
#   deploy/image-build.sh build PROFILE STAGE   cargo build with PROFILE, then lay out the
#                                               runtime image's files under STAGE
#   deploy/image-build.sh check STAGE           what the runtime image must be able to do
#
# The Dockerfile runs `build release /stage` and `check /stage`; .ci/run runs them with the
# dev profile, taking the binary the test build made instead of spending minutes on a release
# build. `check` runs the staged binary with a clean environment, as the image
# does: its libraries are only those of the runtime base image, `migrate` creates a fresh
# SQLite database, and `healthcheck` fails while nothing listens and succeeds once a
# production-mode server is up; the server then drains on SIGTERM and exits 0.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  echo "usage: $0 build PROFILE STAGE | check STAGE" >&2
  exit 2
}

# The runtime base (gcr.io/distroless/cc-debian12) has glibc and libgcc and nothing else: a
# binary that needs another shared library would build and then fail to start in the image.
RUNTIME_LIBRARIES='linux-vdso.so.1 libc.so.6 libm.so.6 libgcc_s.so.1 libpthread.so.0 libdl.so.2 librt.so.1 ld-linux-x86-64.so.2 ld-linux-aarch64.so.1'

build() {
  local profile=$1 stage=$2
  if [ "$profile" = dev ]; then
    # CI, right after `cargo test --workspace`: the binary that build already made. Building
    # the server alone would resolve a narrower feature set (no dev-dependencies) and compile
    # much of the tree again for nothing.
    cargo test --locked --workspace --no-run -q
  else
    cargo build --locked --profile "$profile" -p splitsave-server --bin splitsave
  fi
  # Cargo writes the dev and test profiles to debug/, every other profile to its own name.
  local out=$profile
  case $profile in dev | test) out=debug ;; bench) out=release ;; esac
  local binary="${CARGO_TARGET_DIR:-target}/$out/splitsave"
  install -D -m 0755 "$binary" "$stage/usr/local/bin/splitsave"
  # The release profile keeps line tables for profiling; the image keeps only the symbols,
  # which is enough for a readable panic backtrace and several times smaller.
  strip --strip-debug "$stage/usr/local/bin/splitsave"
  # SPLITSAVE_DATA_DIR of the image (SQLite file, when no DATABASE_URL is given); the
  # Dockerfile gives it to the non-root user.
  install -d -m 0700 "$stage/var/lib/splitsave"
  echo "image-build: staged $(du -h "$stage/usr/local/bin/splitsave" | cut -f1) binary in $stage"
}

# A port nothing listens on (bash's /dev/tcp: the build image has no other tool for it).
free_port() {
  local port
  for _ in $(seq 1 100); do
    port=$((20000 + RANDOM % 30000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return 0
    fi
  done
  echo "image-build: no free port found" >&2
  return 1
}

random_secret() {
  od -An -N32 -tx1 /dev/urandom | tr -d ' \n'
}

check() {
  local stage=$1
  local binary
  binary="$(cd "$stage" && pwd)/usr/local/bin/splitsave"
  [ -x "$binary" ] || { echo "image-build: no $binary (run build first)" >&2; exit 1; }
  [ -d "$stage/var/lib/splitsave" ] || { echo "image-build: no data directory" >&2; exit 1; }

  local lib
  for lib in $(ldd "$binary" | awk '{ sub(".*/", "", $1); print $1 }'); do
    case " $RUNTIME_LIBRARIES " in
      *" $lib "*) ;;
      *) echo "image-build: the binary needs $lib, which the runtime image lacks" >&2; exit 1 ;;
    esac
  done

  work=$(mktemp -d)
  server_pid=
  trap 'if [ -n "$server_pid" ]; then kill -KILL "$server_pid" 2>/dev/null || true; fi; rm -rf "$work"' EXIT
  local port
  port=$(free_port)
  # What the image runs with: no inherited variables, and a working directory without a .env.
  local -a image_env=(env -i "PATH=/usr/local/bin:/usr/bin:/bin"
    SPLITSAVE_ENV=production "PORT=$port" "SPLITSAVE_DATA_DIR=$work"
    "DATABASE_URL=sqlite://$work/splitsave.db")
  cd "$work"

  "${image_env[@]}" "$binary" --version
  "${image_env[@]}" "$binary" migrate >"$work/migrate.log" 2>&1 \
    || { cat "$work/migrate.log" >&2; echo "image-build: migrate failed" >&2; exit 1; }
  [ -s "$work/splitsave.db" ] || { echo "image-build: migrate created no database" >&2; exit 1; }
  "${image_env[@]}" "$binary" migrate >>"$work/migrate.log" 2>&1 \
    || { cat "$work/migrate.log" >&2; echo "image-build: a second migrate failed" >&2; exit 1; }

  if "${image_env[@]}" "$binary" healthcheck 2>/dev/null; then
    echo "image-build: healthcheck succeeded with no server on port $port" >&2
    exit 1
  fi

  "${image_env[@]}" "JWT_SECRET=$(random_secret)" "JWT_REFRESH_SECRET=$(random_secret)" \
    "$binary" serve >"$work/server.log" 2>&1 &
  server_pid=$!
  local deadline=$((SECONDS + 60))
  until "${image_env[@]}" "$binary" healthcheck 2>/dev/null; do
    if ! kill -0 "$server_pid" 2>/dev/null; then
      cat "$work/server.log" >&2
      echo "image-build: the server exited before it was ready" >&2
      exit 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      cat "$work/server.log" >&2
      echo "image-build: the server was not ready within 60 s" >&2
      exit 1
    fi
    sleep 0.2
  done

  # Docker stops a container with SIGTERM and kills it 10 s later (compose: stop_grace_period).
  kill -TERM "$server_pid"
  deadline=$((SECONDS + 15))
  while kill -0 "$server_pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do
    sleep 0.1
  done
  local status=0
  if kill -0 "$server_pid" 2>/dev/null; then
    cat "$work/server.log" >&2
    echo "image-build: the server did not exit within 15 s of SIGTERM" >&2
    exit 1
  fi
  wait "$server_pid" || status=$?
  server_pid=
  if [ "$status" -ne 0 ]; then
    cat "$work/server.log" >&2
    echo "image-build: the server exited with $status after SIGTERM" >&2
    exit 1
  fi
  echo "image-build: checked: runtime libraries, migrate, healthcheck, serve and drain"
}

case ${1:-} in
  build) [ $# -eq 3 ] || usage; build "$2" "$3" ;;
  check) [ $# -eq 2 ] || usage; check "$2" ;;
  *) usage ;;
esac
