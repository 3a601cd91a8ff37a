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

# Makes sure python3 can import pika (the AMQP tests publish with it, as a service outside orderscope would).
ensure_pika() {
  if ! command -v python3 >/dev/null 2>&1; then
    echo "==> installing python3"
    apt_install python3 python3-pip
  fi
  if python3 -c 'import pika' >/dev/null 2>&1; then echo "==> pika is installed"; return 0; fi
  echo "==> installing pika (pip)"
  python3 -m pip install --quiet --user pika 2>/dev/null \
    || python3 -m pip install --quiet --user --break-system-packages pika \
    || apt_install python3-pika
  python3 -c 'import pika' || { echo "error: python3 cannot import pika" >&2; return 1; }
}

# Makes sure a headless Chromium is installed (Debian package `chromium`), for the order page test.
ensure_chromium() {
  if command -v chromium >/dev/null 2>&1; then echo "==> chromium is installed"; return 0; fi
  echo "==> installing Chromium (Debian package chromium)"
  apt_install chromium
}

# Makes sure a Python with the OpenTelemetry SDK and requests is ready for the foreign-caller
# test (an OpenTelemetry-Python client posting an order): a virtualenv in target/python-otel,
# created once. The test finds it there (or through $ORDERSCOPE_PYTHON).
ensure_python_otel() {
  local venv=target/python-otel
  if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import opentelemetry.sdk, requests" 2>/dev/null; then
    echo "==> Python OpenTelemetry SDK is ready ($venv)"; return 0
  fi
  if ! command -v python3 >/dev/null 2>&1; then
    echo "==> installing python3 from the system packages"
    apt_install python3 python3-venv
  fi
  if ! python3 -m venv "$venv" >/dev/null 2>&1; then
    apt_install python3-venv
    python3 -m venv "$venv"
  fi
  echo "==> installing opentelemetry-api, opentelemetry-sdk and requests into $venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    "opentelemetry-api==1.45.2" "opentelemetry-sdk==1.45.2" "requests==2.34.2"
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
