#!/usr/bin/env bash
# Start the local services the tests use, when one is not answering. Idempotent.
set -uo pipefail
up() { timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }
wait_for() { for _ in $(seq 1 60); do up "$1" && return 0; sleep 0.5; done; echo "service on port $1 did not start" >&2; return 1; }
start() {  # port, command...
  local port=$1; shift
  if ! up "$port"; then
    echo "starting service on port $port: $*" >&2
    "$@" >/dev/null 2>&1 || true
    wait_for "$port" || exit 1
  fi
}
start 5432 bash -c 'pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start'
start 3306 start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
start 6379 redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
start 5672 rabbitmq-server -detached
start 1883 mosquitto -d -c /etc/mosquitto/mosquitto.conf
start 4222 start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
# The browser the web UI's end-to-end tests drive (Debian's chromium, through Playwright).
if ! command -v chromium >/dev/null 2>&1; then
  echo "installing Debian's chromium for the browser tests" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1; } \
    || echo "could not install chromium: the browser tests will fail" >&2
fi
# The agent's isolation tests build network namespaces (ip, ss), a firewall in them (nft),
# and run PostgreSQL inside as the postgres user (setpriv).
for tool in ip:iproute2 ss:iproute2 nft:nftables setpriv:util-linux; do
  if ! command -v "${tool%%:*}" >/dev/null 2>&1; then
    echo "installing ${tool#*:} for the agent's isolation tests" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${tool#*:}" >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${tool#*:}" >/dev/null 2>&1; } \
      || echo "could not install ${tool#*:}: the agent's isolation tests will fail" >&2
  fi
done
# A Java runtime for the Spark tests (pyspark starts a JVM; Spark 4 needs Java 17 or 21).
if ! command -v java >/dev/null 2>&1; then
  echo "installing Debian's Java 17 runtime for the Spark tests" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q openjdk-17-jre-headless >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q openjdk-17-jre-headless >/dev/null 2>&1; } \
    || echo "could not install a Java runtime: the Spark tests will fail" >&2
fi
exit 0
