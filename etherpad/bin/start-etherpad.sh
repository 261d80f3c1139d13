#!/usr/bin/env bash
# Start the Etherpad installed in $ETHERPAD_HOME (by install-etherpad.sh).
#
# Writes settings.json from the template, then runs node in the background with a pid file,
# or with --foreground in place of this script (systemd, a container). Returns as soon as
# node is launched; wait-healthy.sh waits for it to answer.
#
# usage: start-etherpad.sh [--foreground] [--write-settings-only]
#
# Environment (defaults are the AWS ones):
#   ETHERPAD_HOME         the install                                   /opt/etherpad
#   ETHERPAD_IP           address to listen on (0.0.0.0 on AWS, behind the security group)
#                                                                       127.0.0.1
#   ETHERPAD_PORT         9001
#   DB_TYPE               postgres | mysql | dirty (a file per instance: not shareable)
#                                                                       postgres
#   DB_HOST DB_PORT DB_NAME DB_USER                      127.0.0.1 5432|3306 etherpad etherpad
#   DB_SSL                postgres: require (TLS, the server's certificate not verified: what
#                         RDS for PostgreSQL 15+ demands, rds.force_ssl=1), verify-full (TLS,
#                         the certificate checked against DB_SSL_ROOT_CERT, a PEM file such as
#                         RDS's global-bundle.pem, and the host name), or disable (plain: RDS
#                         and the local cloud refuse it)                  require
#   DB_WAIT_S             how long to wait for the database to accept connections   120
#   DB_PASSWORD           or DB_PASSWORD_PARAMETER: name of an SSM SecureString parameter,
#                         read with `aws ssm get-parameter --with-decryption` (needs AWS_DEFAULT_REGION or AWS_REGION)
#   ETHERPAD_APIKEY       HTTP API key, or ETHERPAD_APIKEY_PARAMETER (SSM); written to
#                         APIKEY.txt; generated once when neither is set
#   ETHERPAD_SESSIONKEY   session signing key, or ETHERPAD_SESSIONKEY_PARAMETER (SSM); give
#                         every instance the same one so sessions survive a rolling update
#   ETHERPAD_KEEPALIVE_TIMEOUT_S  how long an idle connection stays open (the release plugin):
#                         longer than the load balancer's idle timeout      65
#   ETHERPAD_PAD_LEASE    off: no pad lease (two instances on one database both serve pads,
#                         which Etherpad cannot do safely); with postgres it is on otherwise
#   ETHERPAD_PAD_LEASE_ADDRESS  host:port where the other instances reach this one to forward
#                         pad traffic (default: ETHERPAD_IP:ETHERPAD_PORT; when listening on
#                         0.0.0.0, the instance's private IP from IMDSv2, at ETHERPAD_IMDS_URL
#                         http://169.254.169.254)
#   ETHERPAD_LOGLEVEL (INFO)  ETHERPAD_TITLE (Etherpad)  ETHERPAD_TRUST_PROXY (true: behind a load balancer)
#   ETHERPAD_LOG          node's output in background mode          $ETHERPAD_HOME/var/etherpad.log
#   NODE_ENV              production
#
# settings.json keeps Etherpad's own "${VAR:default}" placeholders, which Etherpad 1.8 fills
# from the environment at start: the password never lands in a file. (Only a password
# Etherpad would turn into a number or boolean is written into the file, mode 600.)
# Pid file: $ETHERPAD_HOME/var/etherpad.pid. Exit 0 when launched or already running.

set -euo pipefail

PROG=start-etherpad.sh
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
die() { echo "$PROG: error: $*" >&2; exit 1; }
say() { echo "$PROG: $*" >&2; }

FOREGROUND=""
SETTINGS_ONLY=""
while [ $# -gt 0 ]; do
  case "$1" in
    --foreground) FOREGROUND=1; shift ;;
    --write-settings-only) SETTINGS_ONLY=1; shift ;;
    -h|--help) sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done

HOME_DIR=${ETHERPAD_HOME:-/opt/etherpad}
TEMPLATE=${ETHERPAD_SETTINGS_TEMPLATE:-$SCRIPT_DIR/../settings.json.template}
PIDFILE="$HOME_DIR/var/etherpad.pid"
LOG=${ETHERPAD_LOG:-$HOME_DIR/var/etherpad.log}

[ -f "$HOME_DIR/src/node/server.js" ] || die "no Etherpad installed in $HOME_DIR (run install-etherpad.sh first)"
[ -f "$TEMPLATE" ] || die "settings template $TEMPLATE is missing (reinstall with install-etherpad.sh)"
command -v node >/dev/null || die "node is not installed (install Node.js 18 or 20)"

pid_alive() {
  local pid
  [ -f "$PIDFILE" ] || return 1
  pid=$(cat "$PIDFILE" 2>/dev/null || true)
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q 'server.js'
}

# A value from the environment, else from the SSM parameter named by <NAME>_PARAMETER.
read_secret() {
  local name=$1 param_var="${1}_PARAMETER" param
  if [ -n "${!name:-}" ]; then printf '%s' "${!name}"; return; fi
  param=${!param_var:-}
  [ -n "$param" ] || return 0
  command -v aws >/dev/null || die "$param_var is set but the aws CLI is not installed (install it, or set $name)"
  # AWS CLI v1 reads only AWS_DEFAULT_REGION: pass the region whichever variable holds it.
  local region=${AWS_DEFAULT_REGION:-${AWS_REGION:-}}
  aws ssm get-parameter ${region:+--region "$region"} --name "$param" --with-decryption \
      --query Parameter.Value --output text \
    || die "cannot read SSM parameter $param (the instance role needs ssm:GetParameter and kms:Decrypt; set AWS_DEFAULT_REGION)"
}

# APIKEY.txt / SESSIONKEY.txt: from the environment when given, else made once and kept.
write_key() {
  local file="$HOME_DIR/$1" value=$2
  if [ -n "$value" ]; then
    (umask 077; printf '%s' "$value" >"$file")
  elif [ ! -s "$file" ]; then
    (umask 077; od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"$file")
  fi
  chmod 600 "$file"
}

if [ -z "$SETTINGS_ONLY" ] && pid_alive; then
  say "Etherpad is already running from $HOME_DIR (pid $(cat "$PIDFILE"))"
  exit 0
fi

export ETHERPAD_IP=${ETHERPAD_IP:-127.0.0.1}
export ETHERPAD_PORT=${ETHERPAD_PORT:-9001}
export DB_TYPE=${DB_TYPE:-postgres}
case "$DB_TYPE" in
  postgres) export DB_PORT=${DB_PORT:-5432} ;;
  mysql) export DB_PORT=${DB_PORT:-3306} ;;
  dirty) ;;
  *) die "DB_TYPE=$DB_TYPE is not supported (use postgres, mysql or dirty)" ;;
esac
export DB_HOST=${DB_HOST:-127.0.0.1} DB_NAME=${DB_NAME:-etherpad} DB_USER=${DB_USER:-etherpad}
DB_WAIT_S=${DB_WAIT_S:-120}
export DB_SSL=${DB_SSL:-require}
case "$DB_SSL" in
  require|disable) ;;
  verify-full)
    [ -n "${DB_SSL_ROOT_CERT:-}" ] && [ -r "$DB_SSL_ROOT_CERT" ] \
      || die "DB_SSL=verify-full needs DB_SSL_ROOT_CERT, a readable PEM file of the database's CA (RDS: global-bundle.pem)"
    export DB_SSL_ROOT_CERT ;;
  *) die "DB_SSL=$DB_SSL is not supported (use require, verify-full or disable)" ;;
esac
[[ "$DB_WAIT_S" =~ ^[0-9]+$ ]] || die "DB_WAIT_S=$DB_WAIT_S is not a whole number of seconds"
DB_PASSWORD=$(read_secret DB_PASSWORD) || exit 1
export DB_PASSWORD
export NODE_ENV=${NODE_ENV:-production}

# The pad lease (the release plugin): the holder serves pads, the others forward to the
# address it advertises. On AWS that is the instance's private IP (IMDSv2, each call bounded).
instance_private_ip() {
  local imds=${ETHERPAD_IMDS_URL:-http://169.254.169.254} token
  command -v curl >/dev/null || return 0
  token=$(curl -fsS --max-time 1 -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 300' \
          "$imds/latest/api/token" 2>/dev/null) || return 0
  curl -fsS --max-time 1 -H "X-aws-ec2-metadata-token: $token" \
       "$imds/latest/meta-data/local-ipv4" 2>/dev/null || true
}
if [ -z "${ETHERPAD_PAD_LEASE_ADDRESS:-}" ]; then
  case "$ETHERPAD_IP" in
    0.0.0.0|::) lease_ip=$(instance_private_ip) ;;
    *) lease_ip=$ETHERPAD_IP ;;
  esac
  # Unknown: the plugin takes the first non-loopback IPv4 address.
  if [ -n "$lease_ip" ]; then export ETHERPAD_PAD_LEASE_ADDRESS="$lease_ip:$ETHERPAD_PORT"; fi
fi

mkdir -p "$HOME_DIR/var"
SETTINGS="$HOME_DIR/settings.json"
node -e '
  const fs = require("fs"); const path = require("path");
  const [template, out, home] = process.argv.slice(1);
  const s = JSON.parse(fs.readFileSync(template, "utf8"));
  const type = process.env.DB_TYPE;
  if (type === "dirty") {
    s.dbType = "dirty";
    s.dbSettings = {filename: path.join(home, "var", "dirty.db")};
  } else if (type === "mysql") {
    s.dbSettings.charset = "utf8mb4";
    delete s.dbSettings.ssl;
  } else if (process.env.DB_SSL === "disable") {
    delete s.dbSettings.ssl;
  } else if (process.env.DB_SSL === "verify-full") {
    // node-postgres hands "ssl" to tls.connect: the CA, and the host name checked.
    s.dbSettings.ssl = {rejectUnauthorized: true,
                        ca: fs.readFileSync(process.env.DB_SSL_ROOT_CERT, "utf8")};
  } else {
    s.dbSettings.ssl = {rejectUnauthorized: false};
  }
  // Etherpad turns a substituted value that looks like a number, boolean, null or undefined
  // into that type; a database driver wants the password as a string.
  const pw = process.env.DB_PASSWORD;
  const coerced = pw !== "" && (["true", "false", "null", "undefined"].includes(pw) ||
      (!isNaN(pw) && !isNaN(parseFloat(pw) && isFinite(pw))));
  if (type !== "dirty" && coerced) s.dbSettings.password = pw;
  fs.writeFileSync(out + ".tmp", JSON.stringify(s, null, 2) + "\n", {mode: 0o600});
  fs.chmodSync(out + ".tmp", 0o600);
  fs.renameSync(out + ".tmp", out);
' "$TEMPLATE" "$SETTINGS" "$HOME_DIR"

APIKEY=$(read_secret ETHERPAD_APIKEY) || exit 1
SESSIONKEY=$(read_secret ETHERPAD_SESSIONKEY) || exit 1
write_key APIKEY.txt "$APIKEY"
write_key SESSIONKEY.txt "$SESSIONKEY"

if [ -n "$SETTINGS_ONLY" ]; then
  say "wrote $SETTINGS"
  exit 0
fi

# Etherpad 1.8 does not exit when its port is taken: it logs EADDRINUSE and hangs.
probe_ip=$ETHERPAD_IP
[ "$probe_ip" = 0.0.0.0 ] && probe_ip=127.0.0.1
if (exec 3<>"/dev/tcp/$probe_ip/$ETHERPAD_PORT") 2>/dev/null; then
  die "port $ETHERPAD_PORT on $probe_ip is already in use (stop what listens there, or set ETHERPAD_PORT)"
fi

# Etherpad 1.8 exits when its first connection to the database fails. An instance can boot
# while the database is still starting, rebooting or failing over: wait for it to accept
# connections (each try bounded, for an address a security group drops), up to DB_WAIT_S.
if [ "$DB_TYPE" != dirty ] && [ "$DB_WAIT_S" -gt 0 ]; then
  waited=0
  # shellcheck disable=SC2016  # $0 and $1 are the inner bash's arguments
  until timeout 3 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$DB_HOST" "$DB_PORT" 2>/dev/null; do
    [ "$waited" -ge "$DB_WAIT_S" ] && die "the database at $DB_HOST:$DB_PORT did not accept connections within $DB_WAIT_S s (check that it runs and that this instance may reach it; DB_WAIT_S sets the wait)"
    [ "$waited" -eq 0 ] && say "waiting for the database at $DB_HOST:$DB_PORT (up to $DB_WAIT_S s)"
    sleep 1
    waited=$((waited + 1))
  done
  [ "$waited" -gt 0 ] && say "the database at $DB_HOST:$DB_PORT accepts connections after ${waited} s"
fi

cd "$HOME_DIR"
if [ -n "$FOREGROUND" ]; then
  echo $$ >"$PIDFILE"
  exec node src/node/server.js --settings "$SETTINGS"
fi
nohup node src/node/server.js --settings "$SETTINGS" >>"$LOG" 2>&1 </dev/null &
echo $! >"$PIDFILE"
say "started Etherpad $(cat RELEASE 2>/dev/null || echo '?') from $HOME_DIR on $ETHERPAD_IP:$ETHERPAD_PORT (pid $!, log $LOG)"
