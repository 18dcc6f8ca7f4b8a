#!/usr/bin/env bash
# with-postgres.sh PROGRAM [ARGS...] - runs a test program against a private PostgreSQL
# cluster, then stops and removes the cluster (also when the program fails or crashes).
#
# The cluster lives in a temporary directory: initdb with trust authentication for the user
# sfa, the C locale (byte order, as SQLite compares) and UTF-8, started with pg_ctl listening
# on a Unix socket in that directory only (no TCP port, so parallel suites never collide),
# without fsync (a test cluster need not survive a power cut). The program finds it through
# SFA_TEST_PG_HOST (the socket directory) and connects as sfa.
#
# PostgreSQL refuses to run as root: when run as root (CI machines), the server programs run
# as the unprivileged user nobody; the test program itself stays as it was called (root may
# use the socket of a directory it does not own).
#
# Without PostgreSQL's server programs the suite fails (TAP "not ok"), saying what to
# install: a database conformance run that silently skipped would prove nothing.
set -u

pgbin=""
for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
  if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then pgbin=$d; break; fi
done
if [ -z "$pgbin" ] && command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
  pgbin=$(dirname "$(command -v initdb)")
fi
if [ -z "$pgbin" ]; then
  echo "1..1"
  echo "not ok 1 - PostgreSQL's server programs (initdb, pg_ctl) are not installed: install Debian's postgresql package (apt-get install postgresql; scripts/deps.sh does) to run the PostgreSQL conformance tests"
  exit 1
fi

dir=$(mktemp -d /tmp/sfa-pg-XXXXXX) || exit 1
as_pg=()
if [ "$(id -u)" -eq 0 ]; then
  chown nobody:nogroup "$dir"
  as_pg=(setpriv --reuid=nobody --regid=nogroup --clear-groups --)
fi
log="$dir/setup.log"

stop() {
  if [ -f "$dir/data/postmaster.pid" ]; then
    "${as_pg[@]}" "$pgbin/pg_ctl" -D "$dir/data" -m immediate -w stop >>"$log" 2>&1
  fi
  rm -rf "$dir"
}
trap stop EXIT
trap 'exit 1' INT TERM HUP

fail_setup() {
  echo "1..1"
  echo "not ok 1 - the private PostgreSQL cluster did not start ($1); its log follows on stderr"
  cat "$log" "$dir/server.log" >&2 2>/dev/null
  exit 1
}

# initdb takes about three seconds, mostly its bootstrap; a cluster it made once is kept in
# SFA_TEST_PG_CACHE (meson sets it inside the build dir) and copied for each run instead.
# The stamp names the server and the options, so a change of either makes a new one.
initdb_opts=(-U sfa -A trust --no-locale -E UTF8 --no-sync)
stamp="$("$pgbin/postgres" --version) ${initdb_opts[*]}"
cache=${SFA_TEST_PG_CACHE:-}
# HOME and the working directory must be readable by nobody too.
cd "$dir" || exit 1
if [ -n "$cache" ] && [ "$(cat "$cache/stamp" 2>/dev/null)" = "$stamp" ]; then
  cp -a "$cache/data" "$dir/data" 2>>"$log" || fail_setup "copying the cached cluster failed"
else
  HOME=$dir "${as_pg[@]}" "$pgbin/initdb" -D "$dir/data" "${initdb_opts[@]}" >>"$log" 2>&1 ||
    fail_setup "initdb failed"
  if [ -n "$cache" ]; then
    # Built aside and renamed into place, so a suite running at the same time never
    # copies half a cache.
    mkdir -p "$(dirname "$cache")"
    tmp=$(mktemp -d "$cache.tmp-XXXXXX") &&
      cp -a "$dir/data" "$tmp/data" && echo "$stamp" >"$tmp/stamp" &&
      { rm -rf "$cache.old-$$"; [ ! -e "$cache" ] || mv -T "$cache" "$cache.old-$$"; mv -T "$tmp" "$cache"; }
    rm -rf "$tmp" "$cache.old-$$"
  fi
fi
HOME=$dir "${as_pg[@]}" "$pgbin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
  -o "-c listen_addresses='' -c unix_socket_directories='$dir' -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
  start >>"$log" 2>&1 || fail_setup "pg_ctl start failed"
cd - >/dev/null || exit 1

export SFA_TEST_PG_HOST=$dir
"$@"
