# Shared helpers for scripts/test and scripts/demo. Sourced, not run.

# Runs a command as root: directly when we are root, through sudo otherwise.
as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null 2>&1; then sudo "$@"; else
    echo "error: '$*' needs root and sudo is not available" >&2; return 1; fi
}

apt_updated=0
apt_install() {
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "error: apt-get not found; install $* with your package manager" >&2; return 1
  fi
  if [ "$apt_updated" = 0 ]; then as_root apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "$@"
}

# True when something accepts TCP connections on 127.0.0.1:$1.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Makes sure a RabbitMQ broker listens on 127.0.0.1:5672 (or $AMQP_ADDR's host is left alone).
ensure_rabbitmq() {
  if [ -n "${AMQP_ADDR:-}" ]; then
    echo "==> using RabbitMQ at \$AMQP_ADDR"; return 0
  fi
  if port_open 5672; then echo "==> RabbitMQ is listening on 127.0.0.1:5672"; return 0; fi
  if ! command -v rabbitmq-server >/dev/null 2>&1; then
    echo "==> installing RabbitMQ (rabbitmq-server) from the system packages"
    apt_install rabbitmq-server
  fi
  echo "==> starting RabbitMQ"
  as_root rabbitmq-server -detached >/dev/null 2>&1 || true
  # The broker takes a few seconds to boot; wait for its port, up to two minutes.
  for _ in $(seq 1 120); do
    if port_open 5672; then echo "==> RabbitMQ is up"; return 0; fi
    sleep 1
  done
  echo "error: RabbitMQ did not start listening on 127.0.0.1:5672 within 120 s" >&2
  return 1
}

# Makes sure PostgreSQL listens on 127.0.0.1:5432 with a database `test` (left alone when
# $DATABASE_URL is set): starts the installed cluster, or installs PostgreSQL from the system
# packages first, then creates the database when it is missing.
ensure_postgres() {
  if [ -n "${DATABASE_URL:-}" ]; then
    echo "==> using PostgreSQL at \$DATABASE_URL"; return 0
  fi
  if ! port_open 5432; then
    if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
      echo "==> installing PostgreSQL from the system packages"
      apt_install postgresql
    fi
    local version
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    echo "==> starting PostgreSQL $version"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    for _ in $(seq 1 60); do
      if port_open 5432; then break; fi
      sleep 1
    done
    if ! port_open 5432; then
      echo "error: PostgreSQL did not start listening on 127.0.0.1:5432 within 60 s" >&2
      return 1
    fi
  fi
  echo "==> PostgreSQL is listening on 127.0.0.1:5432"
  # Trust authentication for local TCP connections, as the tests and the demo expect.
  if ! psql "postgres://postgres@127.0.0.1:5432/postgres" -tAc 'SELECT 1' >/dev/null 2>&1; then
    local hba
    hba=$(ls /etc/postgresql/*/main/pg_hba.conf | sort -V | tail -n 1)
    echo "==> allowing trust authentication on 127.0.0.1 in $hba"
    as_root sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
    as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n 1)" main reload
  fi
  if ! psql "postgres://postgres@127.0.0.1:5432/postgres" -tAc \
      "SELECT 1 FROM pg_database WHERE datname = 'test'" | grep -q 1; then
    echo "==> creating database test"
    psql "postgres://postgres@127.0.0.1:5432/postgres" -qc 'CREATE DATABASE test'
  fi
}
