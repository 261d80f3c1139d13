#!/usr/bin/env bash
# Install one Etherpad release into $ETHERPAD_HOME, ready for start-etherpad.sh.
#
# Runs on its own wherever a machine installs Etherpad: EC2 user data, a Packer provisioner,
# a CodeDeploy AfterInstall hook (--from-tree), and the local cloud's instances, which run
# this very file. Needs bash, tar, node and npm 8.3+ (for "overrides"), and git for git
# sources.
#
# usage: install-etherpad.sh [--from-tree DIR] [--fetch-only]
#   --from-tree DIR  install the release tree in DIR (a CodeDeploy revision's etherpad-lite/)
#                    instead of fetching one; the release is read from the tree
#   --fetch-only     fetch and verify the release into $ETHERPAD_HOME, skip the dependencies
#
# Environment (defaults are the AWS ones):
#   ETHERPAD_HOME        install root                                  /opt/etherpad
#   ETHERPAD_RELEASE     release to install, e.g. 1.8.18 (required unless --from-tree)
#   ETHERPAD_SOURCE      github | npm | URL or path of a git mirror with the release tags |
#                        directory or tarball of one release           github
#   ETHERPAD_COMMIT      commit the release must be; "any" skips the check (default: the
#                        known commits of ether/etherpad-lite releases; with --from-tree
#                        none, the bundle's builder verified it)
#   ETHERPAD_CACHE_DIR   keep installed trees here, one per source and release, so the next
#                        install of that release is a copy (unset: no cache)
#   ETHERPAD_GITHUB_URL  what "github" means       https://github.com/ether/etherpad-lite.git
#
# Layout it leaves (the layout of a git checkout after src/bin/installDeps.sh):
#   src/                      Etherpad (ep_etherpad-lite) with its dependencies in src/node_modules
#   node_modules/ep_etherpad-lite -> ../src
#   node_modules/ep_deployer_release   the release marker plugin (X-Etherpad-Release header)
#   .git/                     for git sources: Etherpad's Server header names its commit
#   RELEASE, var/, deployer/  (this folder's bin/ and settings template, for start/stop)
#   .deployer-install.json    what was installed, from where, how long it took
# A previous install in $ETHERPAD_HOME is replaced; its var/ and keys are kept.
# Errors end in one line "install-etherpad.sh: error: <what> (<what to do>)" and exit 1.

set -euo pipefail

PROG=install-etherpad.sh
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
ASSETS=$(dirname "$SCRIPT_DIR")
PLUGIN_DIR="$ASSETS/plugin/ep_deployer_release"
SQLITE3_OVERRIDE=5.1.7

now_ms() { date +%s%3N; }
T0=$(now_ms)
die() { echo "$PROG: error: $*" >&2; exit 1; }
say() { local ms=$(( $(now_ms) - T0 )); echo "$PROG [$((ms / 1000)).$((ms % 1000 / 100))s]: $*" >&2; }

HOME_DIR=${ETHERPAD_HOME:-/opt/etherpad}
RELEASE=${ETHERPAD_RELEASE:-}
SOURCE=${ETHERPAD_SOURCE:-github}
GITHUB_URL=${ETHERPAD_GITHUB_URL:-https://github.com/ether/etherpad-lite.git}
CACHE_DIR=${ETHERPAD_CACHE_DIR:-}
FROM_TREE=""
FETCH_ONLY=""

while [ $# -gt 0 ]; do
  case "$1" in
    --from-tree) [ $# -ge 2 ] || die "--from-tree needs a directory"; FROM_TREE=$2; shift 2 ;;
    --fetch-only) FETCH_ONLY=1; shift ;;
    -h|--help) sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done

# Fail fast on unreachable hosts; git would retry for minutes. Stalled transfers end too.
export GIT_TERMINAL_PROMPT=0
export GIT_HTTP_LOW_SPEED_LIMIT=${GIT_HTTP_LOW_SPEED_LIMIT:-1000}
export GIT_HTTP_LOW_SPEED_TIME=${GIT_HTTP_LOW_SPEED_TIME:-30}
export GIT_SSH_COMMAND=${GIT_SSH_COMMAND:-ssh -o BatchMode=yes -o ConnectTimeout=5}
GIT_LIST_TIMEOUT=${GIT_LIST_TIMEOUT:-60}

# Commits of the releases this tool knows (git tags of ether/etherpad-lite).
known_commit() {
  case "$1" in
    1.8.17) echo c85ab49 ;;
    1.8.18) echo 4b96ff6 ;;
    *) echo "" ;;
  esac
}

# A --from-tree release was fetched and verified by whoever built the bundle (the deployer's
# bundle_release); it is checked again only against an explicit ETHERPAD_COMMIT.
expected_commit() {
  case "${ETHERPAD_COMMIT:-}" in
    any) echo "" ;;
    "") [ -n "$FROM_TREE" ] || known_commit "$RELEASE" ;;
    *) echo "$ETHERPAD_COMMIT" ;;
  esac
}

need() { command -v "$1" >/dev/null 2>&1 || die "$1 is not installed ($2)"; }

# What a release name and a source may hold: the rule of deployer/etherpad/releases.py, the
# stacks' AllowedPattern and the Packer variables' validation (a test keeps them equal).
# Sources end up in git command lines and, on other machines, in shell code.
RELEASE_NAME_PATTERN='^[0-9A-Za-z][0-9A-Za-z._+-]*$'
SOURCE_PATTERN='^[0-9A-Za-z._~/@:+%][0-9A-Za-z._~/@:+%-]*$'

valid_release() {
  local LC_ALL=C
  [[ "$1" =~ $RELEASE_NAME_PATTERN ]] || die "'$1' is not a release name (give a tag like 1.8.18)"
}

valid_source() {
  local LC_ALL=C name=$1 value=$2
  case "$value" in
    -*) die "$name='$value' starts with '-' (give github, npm, a git URL or a path)" ;;
  esac
  [[ "$value" =~ $SOURCE_PATTERN ]] \
    || die "$name='$value' holds characters a source may not have (use letters, digits and . _ ~ / @ : + % -)"
}

# "github", "npm", a URL, or a path; a path is a git mirror, a release directory or a tarball.
source_kind() {
  case "$SOURCE" in
    github) echo github; return ;;
    npm) echo npm; return ;;
    http://*|https://*|git://*|ssh://*|file://*) echo git; return ;;
  esac
  if [[ "$SOURCE" =~ ^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+: ]]; then echo git; return; fi
  if [ -d "$SOURCE" ]; then
    # The repository itself (bare, a .git directory, or the top of a work tree), not a
    # folder inside one: the rule of sources.py's _is_repository.
    local here git_dir top
    here=$(cd "$SOURCE" && pwd -P)
    git_dir=$(git -C "$SOURCE" rev-parse --absolute-git-dir 2>/dev/null || true)
    top=$(git -C "$SOURCE" rev-parse --show-toplevel 2>/dev/null || true)
    if { [ -n "$git_dir" ] && [ "$(cd "$git_dir" && pwd -P)" = "$here" ]; } \
       || { [ -n "$top" ] && [ "$(cd "$top" && pwd -P)" = "$here" ]; }; then
      echo mirror
    else
      echo directory
    fi
    return
  fi
  [ -f "$SOURCE" ] && { echo tarball; return; }
  die "ETHERPAD_SOURCE=$SOURCE is not github, npm, a git URL or an existing path (give one of those)"
}

check_reachable() {
  local url=$1 host="" port=""
  if [[ "$url" =~ ^(https?)://([^/@]*@)?([^/:]+)(:([0-9]+))? ]]; then
    host=${BASH_REMATCH[3]}; port=${BASH_REMATCH[5]}
    [ -n "$port" ] || { [ "${BASH_REMATCH[1]}" = https ] && port=443 || port=80; }
    # Behind a proxy only the proxy is reachable; git's own limits still apply.
    [ -n "${https_proxy:-}${HTTPS_PROXY:-}${http_proxy:-}${HTTP_PROXY:-}${ALL_PROXY:-}" ] && return 0
  elif [[ "$url" =~ ^ssh://([^/@]*@)?([^/:]+)(:([0-9]+))? ]]; then
    host=${BASH_REMATCH[2]}; port=${BASH_REMATCH[4]:-22}
  elif [[ "$url" =~ ^git://([^/:]+)(:([0-9]+))? ]]; then
    host=${BASH_REMATCH[1]}; port=${BASH_REMATCH[3]:-9418}
  elif [[ "$url" =~ ^[^@/]+@([^:/]+): ]]; then
    host=${BASH_REMATCH[1]}; port=22
  else
    return 0
  fi
  # Host and port are arguments of the probe, never part of its code.
  # shellcheck disable=SC2016
  if ! timeout 5 bash -c 'exec 3<>"/dev/tcp/$1/$2"' probe "$host" "$port" 2>/dev/null; then
    local hint="set ETHERPAD_SOURCE to a mirror path or URL"
    [ "$url" = "$GITHUB_URL" ] && hint="$hint, or ETHERPAD_SOURCE=npm with ETHERPAD_RELEASE=1.8.14"
    die "cannot reach $host:$port for $url within 5 s ($hint)"
  fi
}

# The tree's Etherpad package: its version must be the release asked for.
verify_tree() {
  local tree=$1 what=$2 version
  [ -f "$tree/src/package.json" ] || die "$what holds no Etherpad (no src/package.json) (give a tree of ether/etherpad-lite)"
  version=$(node -e '
    const p = require(process.argv[1]);
    if (p.name !== "ep_etherpad-lite") { console.log("!" + p.name); process.exit(0); }
    console.log(p.version);' "$tree/src/package.json") || die "cannot read $tree/src/package.json"
  case "$version" in
    !*) die "$what holds package ${version#!}, not ep_etherpad-lite (give a tree of ether/etherpad-lite)" ;;
  esac
  if [ -z "$RELEASE" ]; then
    RELEASE=$version
  elif [ "$version" != "$RELEASE" ]; then
    die "$what holds Etherpad $version, not $RELEASE (check the release or the source)"
  fi
}

check_commit() {
  local commit=$1 what=$2 expected
  expected=$(expected_commit)
  if [ -n "$expected" ] && [[ "$commit" != "$expected"* ]]; then
    die "$what is commit ${commit:0:12}, expected $expected for release $RELEASE (use the real ether/etherpad-lite history, or ETHERPAD_COMMIT=any to skip the check)"
  fi
}

COMMIT=""

fetch_git() {
  local url=$1 tree=$2 refs commit tags
  need git "install git to fetch releases from a git source"
  check_reachable "$url"
  refs=$(timeout "$GIT_LIST_TIMEOUT" git ls-remote --tags -- "$url" 2>&1) \
    || die "cannot list the tags of $url: $(echo "$refs" | tail -n 1) (check the URL, or set ETHERPAD_SOURCE to a mirror)"
  commit=$(awk -v t="refs/tags/$RELEASE^{}" '$2 == t {print $1}' <<<"$refs")
  [ -n "$commit" ] || commit=$(awk -v t="refs/tags/$RELEASE" '$2 == t {print $1}' <<<"$refs")
  if [ -z "$commit" ]; then
    tags=$(awk '{sub("refs/tags/", "", $2); sub("\\^\\{\\}$", "", $2); print $2}' <<<"$refs" \
      | sort -uV | tail -n 12 | paste -sd ' ' -)
    die "$url has no tag $RELEASE (its tags: ${tags:-none}) (pick one of those, or another source)"
  fi
  check_commit "$commit" "tag $RELEASE of $url"
  say "fetching $RELEASE (${commit:0:12}) from $url"
  local out
  out=$(timeout 900 git -c advice.detachedHead=false clone --quiet --depth 1 --branch "$RELEASE" \
        -- "$url" "$tree" 2>&1) || die "git clone of $RELEASE from $url failed: $(echo "$out" | tail -n 1)"
  COMMIT=$(git -C "$tree" rev-parse HEAD)
  [ "$COMMIT" = "$commit" ] || die "tag $RELEASE of $url moved while fetching (${commit:0:12} -> ${COMMIT:0:12}) (retry)"
  verify_tree "$tree" "tag $RELEASE of $url"
}

fetch_npm() {
  local tree=$1 work=$2 versions tarball
  versions=$(npm view ep_etherpad-lite versions --json --prefer-offline 2>/dev/null) \
    || die "the npm registry does not answer for ep_etherpad-lite (check the network or npm's registry setting)"
  if ! node -e 'process.exit(JSON.parse(process.argv[1]).includes(process.argv[2]) ? 0 : 1)' \
       "$versions" "$RELEASE"; then
    versions=$(node -e 'console.log([].concat(JSON.parse(process.argv[1])).join(", "))' "$versions")
    die "npm has ep_etherpad-lite $versions only, not $RELEASE (use ETHERPAD_SOURCE=github or a mirror for $RELEASE)"
  fi
  say "fetching ep_etherpad-lite@$RELEASE from npm"
  mkdir -p "$work"
  tarball=$(cd "$work" && npm pack "ep_etherpad-lite@$RELEASE" --prefer-offline --silent 2>/dev/null | tail -n 1) \
    || die "npm pack ep_etherpad-lite@$RELEASE failed (check the network or npm's registry setting)"
  tar -xzf "$work/$tarball" -C "$work"
  mkdir -p "$tree"
  mv "$work/package" "$tree/src"
  verify_tree "$tree" "ep_etherpad-lite@$RELEASE from npm"
}

# Copy a release tree, leaving out what an install or a running Etherpad adds to it.
copy_tree() {
  local from=$1 tree=$2
  mkdir -p "$tree"
  if [ -f "$from/src/package.json" ]; then
    tar -C "$from" --exclude=./node_modules --exclude=./src/node_modules --exclude=./var \
        --exclude=./settings.json --exclude=./APIKEY.txt --exclude=./SESSIONKEY.txt \
        --exclude=./credentials.json --exclude=./.deployer-install.json -cf - . | tar -C "$tree" -xf -
    if [ -e "$from/.git" ]; then
      COMMIT=$(git -C "$tree" rev-parse HEAD 2>/dev/null || true)
    fi
  elif [ -f "$from/package.json" ]; then
    mkdir -p "$tree/src"
    tar -C "$from" --exclude=./node_modules -cf - . | tar -C "$tree/src" -xf -
  else
    die "$from holds no Etherpad (no src/package.json) (give a tree of ether/etherpad-lite)"
  fi
  [ -n "$COMMIT" ] && check_commit "$COMMIT" "$from"
  verify_tree "$tree" "$from"
}

unpack_tarball() {
  local file=$1 tree=$2 work=$3 root="" tops
  mkdir -p "$work"
  tar -xf "$file" -C "$work" || die "cannot unpack $file (give a .tar.gz of one release)"
  if [ -f "$work/package/package.json" ] && [ ! -d "$work/package/src" ]; then
    mkdir -p "$tree"; mv "$work/package" "$tree/src"
  else
    if [ -f "$work/src/package.json" ]; then root=$work; else
      tops=$(find "$work" -mindepth 1 -maxdepth 1 | head -n 2)
      [ "$(echo "$tops" | wc -l)" = 1 ] && [ -f "$tops/src/package.json" ] && root=$tops
    fi
    [ -n "$root" ] || die "$file holds no Etherpad tree (no src/package.json) (give a tarball of one release)"
    mv "$root" "$tree"
  fi
  # git archive (and GitHub's tarballs) record the commit in the tar header.
  if command -v git >/dev/null; then
    COMMIT=$( (gzip -dc "$file" 2>/dev/null || cat "$file") | git get-tar-commit-id 2>/dev/null || true)
  fi
  [ -n "$COMMIT" ] && check_commit "$COMMIT" "$file"
  verify_tree "$tree" "$file"
}

fetch_release() {
  local tree=$1 work=$2
  if [ -n "$FROM_TREE" ]; then
    [ -d "$FROM_TREE" ] || die "--from-tree $FROM_TREE is not a directory"
    if [ -z "$RELEASE" ] && [ -f "$FROM_TREE/RELEASE" ]; then RELEASE=$(tr -d ' \n' <"$FROM_TREE/RELEASE"); fi
    copy_tree "$FROM_TREE" "$tree"
    return
  fi
  case "$SOURCE_KIND" in
    github) fetch_git "$GITHUB_URL" "$tree" ;;
    npm) fetch_npm "$tree" "$work/npm" ;;
    git) fetch_git "$SOURCE" "$tree" ;;
    mirror) fetch_git "file://$(cd "$SOURCE" && pwd -P)" "$tree" ;;
    directory) copy_tree "$SOURCE" "$tree" ;;
    tarball) unpack_tarball "$SOURCE" "$tree" "$work/tarball" ;;
  esac
}

install_dependencies() {
  local tree=$1 npm_version
  npm_version=$(npm --version)
  [ "${npm_version%%.*}" -ge 8 ] || die "npm $npm_version is too old: the install needs npm 8.3+ (install Node.js 18 or 20)"
  # ueberdb2's optional sqlite3 points at GitHub: npm retries that host for minutes even
  # with --omit=optional, and a lockfile written by such a failed fetch breaks npm ci.
  # Pinning sqlite3 to a registry version avoids both; optional, so it is not installed.
  node -e '
    const fs = require("fs"); const file = process.argv[1]; const version = process.argv[2];
    const p = JSON.parse(fs.readFileSync(file, "utf8"));
    const direct = Object.assign({}, p.dependencies, p.optionalDependencies, p.devDependencies);
    if (!("sqlite3" in direct)) {
      p.overrides = Object.assign({}, p.overrides, {sqlite3: version});
      fs.writeFileSync(file, JSON.stringify(p, null, 2) + "\n");
    }' "$tree/src/package.json" "$SQLITE3_OVERRIDE"
  say "installing dependencies (npm install in src/, against the release's lockfile when it has one)"
  # installDeps.sh runs `npm ci --no-optional` with npm 6: no peer auto-install then, hence
  # --legacy-peer-deps; `install` rather than `ci` because the override changes the lock.
  (cd "$tree/src" && npm install --omit=dev --omit=optional --legacy-peer-deps --no-audit \
      --no-fund --prefer-offline --loglevel=error >&2) \
    || die "npm install of Etherpad $RELEASE failed (see npm's output above)"
  mkdir -p "$tree/node_modules"
  ln -sfn ../src "$tree/node_modules/ep_etherpad-lite"
}

add_plugin() {
  local tree=$1
  [ -f "$PLUGIN_DIR/ep.json" ] || die "the version plugin is missing beside this script ($PLUGIN_DIR)"
  rm -rf "$tree/node_modules/ep_deployer_release"
  cp -R "$PLUGIN_DIR" "$tree/node_modules/ep_deployer_release"
  # With a root package.json, Etherpad's startup `npm ls` calls an unlisted plugin extraneous.
  if [ -f "$tree/package.json" ]; then
    node -e '
      const fs = require("fs"); const file = process.argv[1];
      const p = JSON.parse(fs.readFileSync(file, "utf8"));
      const version = require(process.argv[2] + "/package.json").version;
      p.dependencies = Object.assign({}, p.dependencies, {ep_deployer_release: version});
      fs.writeFileSync(file, JSON.stringify(p, null, 2) + "\n");' "$tree/package.json" "$PLUGIN_DIR"
  fi
}

# Etherpad 1.8 runs its bundled npm 6 (`npm ls`) at startup to find plugins and exits if npm
# reports a problem; packages left over by the override resolution show up as extraneous.
# Run the same command now and remove what it calls extraneous, until it is clean.
prune_extraneous() {
  local tree=$1 npm6="$1/src/node_modules/npm/bin/npm-cli.js" round out rc paths path
  if [ ! -f "$npm6" ]; then
    say "no bundled npm in this release: skipping Etherpad's plugin check"
    return
  fi
  for round in 1 2 3 4 5 6 7 8 9 10; do
    rc=0
    out=$(cd "$tree" && node "$npm6" ls --long --json --depth=0 --no-production 2>/dev/null) || rc=$?
    paths=$(node -e '
      let data = {}; try { data = JSON.parse(process.argv[1]); } catch (e) {}
      for (const p of data.problems || []) {
        const m = /^extraneous: \S+ (.+)$/.exec(p); if (m) console.log(m[1]);
      }' "$out")
    if [ -z "$paths" ]; then
      [ "$rc" = 0 ] && return
      die "Etherpad's startup check (npm ls) fails: $(node -e '
        let d = {}; try { d = JSON.parse(process.argv[1]); } catch (e) {}
        console.log((d.problems || ["npm ls exited " + process.argv[2]]).join("; "))' "$out" "$rc") (report this with the release and source)"
    fi
    while IFS= read -r path; do
      case "$path" in
        "$tree"/*) ;;
        *) die "npm ls named $path, outside the install (report this)" ;;
      esac
      case "$(basename "$path")" in
        ep_etherpad-lite|ep_deployer_release) die "npm ls calls $path extraneous (report this)" ;;
      esac
      rm -rf "$path"
    done <<<"$paths"
    say "removed $(echo "$paths" | wc -l) extraneous package(s) (round $round)"
  done
  die "Etherpad's startup check still finds extraneous packages after 10 rounds (report this)"
}

install_into() {
  local tree=$1 work=$2
  fetch_release "$tree" "$work"
  echo "$RELEASE" >"$tree/RELEASE"
  [ -n "$FETCH_ONLY" ] && return
  install_dependencies "$tree"
  add_plugin "$tree"
  prune_extraneous "$tree"
}

# Cache entries are keyed by source, release and this installer's own revision, so a
# changed installer or plugin never reuses a tree it did not make.
cache_key() {
  case "$SOURCE_KIND" in
    github)
      if [ "$GITHUB_URL" = https://github.com/ether/etherpad-lite.git ]; then echo github
      else echo "git-$(printf %s "$GITHUB_URL" | sha256sum | cut -c1-12)"; fi ;;
    npm) echo npm ;;
    git) echo "git-$(printf %s "$SOURCE" | sha256sum | cut -c1-12)" ;;
    mirror) echo "git-$(printf %s "file://$(cd "$SOURCE" && pwd -P)" | sha256sum | cut -c1-12)" ;;
    tarball) echo "tarball-$(sha256sum <"$SOURCE" | cut -c1-12)" ;;
    directory) echo "" ;;  # a working directory can change under the same name
  esac
}

installer_revision() {
  cat "${BASH_SOURCE[0]}" "$PLUGIN_DIR"/* 2>/dev/null | sha256sum | cut -c1-8
}

pid_alive() {
  local pidfile=$1 pid
  [ -f "$pidfile" ] || return 1
  pid=$(cat "$pidfile" 2>/dev/null || true)
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q 'server.js'
}

# ---------------------------------------------------------------------------------------
[ -n "$RELEASE" ] || [ -n "$FROM_TREE" ] || die "ETHERPAD_RELEASE is not set (set it to the release to install, e.g. 1.8.18)"
[ -z "$RELEASE" ] || valid_release "$RELEASE"
if [ -z "$FROM_TREE" ]; then
  valid_source ETHERPAD_SOURCE "$SOURCE"
  valid_source ETHERPAD_GITHUB_URL "$GITHUB_URL"
fi
need node "install Node.js 18 or 20"
need npm "install Node.js 18 or 20 with npm"
if [ -d "$HOME_DIR" ] && [ -n "$(ls -A "$HOME_DIR")" ] && [ ! -f "$HOME_DIR/src/node/server.js" ] \
   && [ ! -f "$HOME_DIR/.deployer-install.json" ]; then
  die "ETHERPAD_HOME=$HOME_DIR is not empty and holds no Etherpad install (refusing to replace it; pick an empty or new directory)"
fi
if pid_alive "$HOME_DIR/var/etherpad.pid"; then
  die "Etherpad is running from $HOME_DIR (pid $(cat "$HOME_DIR/var/etherpad.pid")) (stop it first: stop-etherpad.sh)"
fi

SOURCE_KIND=""
[ -n "$FROM_TREE" ] || SOURCE_KIND=$(source_kind)

started=$T0
mkdir -p "$(dirname "$HOME_DIR")"
HOME_DIR=$(cd "$(dirname "$HOME_DIR")" && pwd -P)/$(basename "$HOME_DIR")
STAGE=$(mktemp -d "$(dirname "$HOME_DIR")/.$(basename "$HOME_DIR").install.XXXXXX")
BUILDING=""
trap 'rm -rf "$STAGE" ${BUILDING:+"$BUILDING"}' EXIT
TREE="$STAGE/tree"
FROM_CACHE=false

key=""
if [ -n "$CACHE_DIR" ] && [ -z "$FROM_TREE" ] && [ -z "$FETCH_ONLY" ]; then
  key=$(cache_key)
  [ -n "$key" ] || say "not caching a directory source"
fi

if [ -n "$key" ]; then
  mkdir -p "$CACHE_DIR/$key"
  CACHE_DIR=$(cd "$CACHE_DIR" && pwd -P)  # npm reports physical paths
  entry="$CACHE_DIR/$key/$RELEASE+$(installer_revision)"
  # One installer per entry at a time; the others wait, then copy what it made.
  exec 9>"$CACHE_DIR/$key/.$RELEASE.lock"
  flock -w 1800 9 || die "timed out waiting for another install of $RELEASE into the cache $CACHE_DIR"
  if [ -d "$entry" ]; then
    say "copying $RELEASE from the cache ($entry)"
    FROM_CACHE=true
  else
    BUILDING="$CACHE_DIR/$key/.$RELEASE.building.$$"
    rm -rf "$BUILDING"
    install_into "$BUILDING" "$STAGE/work"
    printf '%s\n' "$COMMIT" >"$BUILDING/.deployer-commit"
    mv "$BUILDING" "$entry"
    BUILDING=""
  fi
  cp -a "$entry" "$TREE"
  COMMIT=$(cat "$TREE/.deployer-commit"); rm -f "$TREE/.deployer-commit"
  RELEASE=$(cat "$TREE/RELEASE")
  flock -u 9
else
  install_into "$TREE" "$STAGE/work"
fi

# Self-contained: an image or a CodeDeploy instance starts Etherpad from the install alone.
mkdir -p "$TREE/var" "$TREE/deployer"
cp -R "$ASSETS/bin" "$ASSETS/plugin" "$TREE/deployer/"
cp "$ASSETS/settings.json.template" "$TREE/deployer/"

finished=$(now_ms)
if [ -n "$FROM_TREE" ]; then SOURCE_DESC="tree:$(cd "$FROM_TREE" && pwd -P)"; else SOURCE_DESC=$SOURCE; fi
node -e '
  const [file, release, commit, source, fromCache, ms] = process.argv.slice(1);
  require("fs").writeFileSync(file, JSON.stringify({
    release, commit: commit || null, source, from_cache: fromCache === "true",
    seconds: Number(ms) / 1000, installed_at: new Date().toISOString(), node: process.version,
  }, null, 2) + "\n");' "$TREE/.deployer-install.json" "$RELEASE" "$COMMIT" \
  "$SOURCE_DESC" "$FROM_CACHE" "$((finished - started))"

# Swap the new tree in, keeping the old install's data and keys.
if [ -e "$HOME_DIR" ]; then
  for keep in var APIKEY.txt SESSIONKEY.txt; do
    if [ -e "$HOME_DIR/$keep" ]; then rm -rf "${TREE:?}/$keep"; mv "$HOME_DIR/$keep" "$TREE/$keep"; fi
  done
  rm -f "$TREE"/var/minified*  # Etherpad's minify cache belongs to the old release
  mv "$HOME_DIR" "$STAGE/old"
fi
mv "$TREE" "$HOME_DIR"
say "installed Etherpad $RELEASE${COMMIT:+ (${COMMIT:0:7})} in $HOME_DIR in $(( (finished - started) / 1000 )).$(( (finished - started) % 1000 / 100 )) s$([ "$FROM_CACHE" = true ] && echo " (from the cache)")"
