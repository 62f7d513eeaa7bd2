#!/bin/sh
# The reference application's PostgreSQL image on the stand-in's process kubelet: Debian's
# PostgreSQL server, started as the official postgres image starts it. On the first start:
# initdb with POSTGRES_USER/POSTGRES_PASSWORD, the database POSTGRES_DB, then the scripts in
# /docker-entrypoint-initdb.d; after that, postgres in the foreground. Every path the manifest
# names is under $FERRY_SANDBOX, where the kubelet links the pod's volumes.
#
# PostgreSQL listens on its Unix socket only (/var/run/postgresql in the pod): pods of both
# stand-in clusters share the host's network, and a TCP port would clash.
set -eu
root="${FERRY_SANDBOX:?this is run by the stand-in's process kubelet}"
bin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
data="$root${PGDATA:-/var/lib/postgresql/data}"
sockets="$root/var/run/postgresql"
user="${POSTGRES_USER:-postgres}"
db="${POSTGRES_DB:-$user}"

if [ "$(id -u)" = 0 ]; then
  echo "refusing to run PostgreSQL as root: set securityContext.runAsUser" >&2
  exit 1
fi
# A user id with no passwd entry (runAsUser: 999 on a host without such a user) gets one
# through nss_wrapper, as in the official image; initdb needs a user name.
if ! getent passwd "$(id -u)" >/dev/null 2>&1; then
  NSS_WRAPPER_PASSWD="$(mktemp)"
  NSS_WRAPPER_GROUP="$(mktemp)"
  echo "postgres:x:$(id -u):$(id -g):PostgreSQL:$data:/bin/false" >"$NSS_WRAPPER_PASSWD"
  echo "postgres:x:$(id -g):" >"$NSS_WRAPPER_GROUP"
  export NSS_WRAPPER_PASSWD NSS_WRAPPER_GROUP LD_PRELOAD=libnss_wrapper.so
fi
mkdir -p "$data" "$sockets"
chmod 700 "$data"

# In a real cluster each pod has its own PID namespace, so a postmaster.pid that came with a
# restored volume names a process the new pod cannot see. Here pods share the host's PIDs: a
# pid file whose process is not serving this very directory is stale.
if [ -f "$data/postmaster.pid" ]; then
  pid="$(head -n 1 "$data/postmaster.pid")"
  if [ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" != "$(readlink -f "$data")" ]; then
    echo "removing stale postmaster.pid (process $pid is not this server)" >&2
    rm -f "$data/postmaster.pid"
  fi
fi

if [ ! -s "$data/PG_VERSION" ]; then
  pwfile="$(mktemp)"
  printf '%s\n' "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set}" >"$pwfile"
  "$bin/initdb" -D "$data" -U "$user" --pwfile="$pwfile" \
    --auth-local=trust --auth-host=scram-sha-256 >&2
  rm -f "$pwfile"
  "$bin/pg_ctl" -D "$data" -w -o "-c listen_addresses='' -k $sockets" start >&2
  psql() { command psql -v ON_ERROR_STOP=1 -h "$sockets" -U "$user" "$@"; }
  if [ "$db" != postgres ]; then
    psql -d postgres -c "CREATE DATABASE \"$db\"" >&2
  fi
  for f in "$root/docker-entrypoint-initdb.d"/*; do
    case "$f" in
      *.sql) echo "running $f" >&2; psql -d "$db" -f "$f" >&2 ;;
      *.sh) echo "running $f" >&2; . "$f" ;;
    esac
  done
  "$bin/pg_ctl" -D "$data" -m fast -w stop >&2
fi
exec "$bin/postgres" -D "$data" -c listen_addresses='' -k "$sockets" "$@"
