#!/usr/bin/env bash
# Installs the jars of Apache Hadoop 2.7.3 (NameNode, DataNode, FsShell) that Ember's HDFS test
# harness (testkit/src/hdfs.rs) runs, into ${EMBER_HADOOP_HOME:-$HOME/.cache/ember-tools/hadoop-2.7.3}.
#
# There is no Maven Central and no Docker here; the jars come from the PyPI *source* package
# pyspark==2.4.8 (220 MB), which ships hadoop-hdfs-2.7.3.jar and its dependencies in deps/jars/.
# Idempotent: does nothing when jars/.complete exists (the marker is written last). The download is
# made in a temporary venv and removed afterwards; only the ~30 jars needed are kept (~33 MB).
set -euo pipefail

HADOOP_HOME_DIR="${EMBER_HADOOP_HOME:-$HOME/.cache/ember-tools/hadoop-2.7.3}"
JARS_DIR="$HADOOP_HOME_DIR/jars"
MARKER="$JARS_DIR/.complete"

PYSPARK_VERSION="2.4.8"
# sha256 of pyspark-2.4.8.tar.gz on PyPI (pip checks it with --require-hashes).
PYSPARK_SHA256="3a19b71b8dc8dd91ebc943604a05e1ab01bce052456d42937035632d852d78dc"

# What the NameNode, the DataNode and FsShell need (from pyspark-2.4.8/deps/jars/).
JARS=(
  hadoop-hdfs-2.7.3.jar
  hadoop-common-2.7.3.jar
  hadoop-auth-2.7.3.jar
  hadoop-annotations-2.7.3.jar
  hadoop-mapreduce-client-core-2.7.3.jar
  jackson-mapper-asl-1.9.13.jar
  jackson-core-asl-1.9.13.jar
  guava-14.0.1.jar
  xercesImpl-2.9.1.jar
  netty-all-4.1.47.Final.jar
  jetty-6.1.26.jar
  jetty-util-6.1.26.jar
  protobuf-java-2.5.0.jar
  log4j-1.2.17.jar
  apache-log4j-extras-1.2.17.jar
  commons-collections-3.2.2.jar
  commons-configuration-1.6.jar
  commons-lang-2.6.jar
  commons-logging-1.1.3.jar
  commons-cli-1.2.jar
  commons-io-2.4.jar
  commons-codec-1.10.jar
  commons-compress-1.20.jar
  slf4j-api-1.7.16.jar
  slf4j-log4j12-1.7.16.jar
  jcl-over-slf4j-1.7.16.jar
  htrace-core-3.1.0-incubating.jar
  javax.servlet-api-3.1.0.jar
  javax.ws.rs-api-2.0.1.jar
  xmlenc-0.52.jar
)

log() { printf 'hadoop.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Runs a command as root (directly, or with sudo when available).
as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    die "need root (or sudo) to run: $*"
  fi
}

ensure_java() {
  if command -v java >/dev/null 2>&1; then
    return
  fi
  command -v apt-get >/dev/null 2>&1 || die "java not found and apt-get unavailable: install a Java 17 runtime"
  log "java not found: installing openjdk-17-jre-headless"
  # Slim Debian images drop /usr/share/man; the JRE's update-alternatives links need it.
  as_root mkdir -p /usr/share/man/man1
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    openjdk-17-jre-headless
  command -v java >/dev/null 2>&1 || die "java still not found after installing openjdk-17-jre-headless"
}

ensure_java

if [ -f "$MARKER" ]; then
  echo "Hadoop 2.7.3 jars already installed in $JARS_DIR"
  exit 0
fi

command -v python3 >/dev/null 2>&1 || die "python3 not found (needed to download pyspark==$PYSPARK_VERSION from PyPI)"
command -v tar >/dev/null 2>&1 || die "tar not found"

mkdir -p "$HADOOP_HOME_DIR"
# One install at a time (e.g. two CI jobs on one machine); the second one then finds the marker.
if command -v flock >/dev/null 2>&1; then
  exec 9>"$HADOOP_HOME_DIR/.install.lock"
  flock 9
  if [ -f "$MARKER" ]; then
    echo "Hadoop 2.7.3 jars already installed in $JARS_DIR"
    exit 0
  fi
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/ember-hadoop.XXXXXX")"
STAGE="$HADOOP_HOME_DIR/.jars.partial.$$"
cleanup() { rm -rf "$WORK" "$STAGE"; }
trap cleanup EXIT

# A bare venv with setuptools + wheel: pyspark 2.4.8's setup.py breaks under build isolation, so
# pip must prepare its metadata with --no-build-isolation (setup.py then fetches its
# setup_requires, pypandoc, with the venv's pip). Without ensurepip (Debian without python3-venv),
# create the venv without pip and install pip into it with the system pip (--python, pip >= 22.3).
# No pip cache: the 220 MB download must not stay behind in ~/.cache/pip.
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PIP_NO_CACHE_DIR=1
VENV="$WORK/venv"
if ! { python3 -m venv "$VENV" >/dev/null 2>&1 && "$VENV/bin/python" -m pip --version >/dev/null 2>&1; }; then
  log "python3 -m venv has no ensurepip: using the system pip to put pip into the venv"
  rm -rf "$VENV"
  python3 -m venv --without-pip "$VENV" || die "python3 -m venv failed (install python3-venv)"
  python3 -m pip --version >/dev/null 2>&1 || die "neither ensurepip nor python3 -m pip is available (install python3-venv)"
  python3 -m pip --python "$VENV/bin/python" install --quiet --no-cache-dir pip
fi
PIP=("$VENV/bin/python" -m pip)

# setuptools < 85: pyspark's setup.py relies on setup_requires (fetch_build_eggs), deprecated in
# setuptools and checked to work with 65.5 and 84.2.
log "installing setuptools + wheel into a temporary venv"
"${PIP[@]}" install --quiet --no-cache-dir 'setuptools<85' wheel

log "downloading pyspark==$PYSPARK_VERSION (source package, 220 MB) from PyPI"
printf 'pyspark==%s --hash=sha256:%s\n' "$PYSPARK_VERSION" "$PYSPARK_SHA256" >"$WORK/requirements.txt"
"${PIP[@]}" download --quiet --no-cache-dir --no-deps --no-build-isolation --no-binary pyspark \
  --require-hashes -r "$WORK/requirements.txt" -d "$WORK/dl"
TARBALL="$WORK/dl/pyspark-$PYSPARK_VERSION.tar.gz"
[ -f "$TARBALL" ] || die "pip did not produce $TARBALL"

log "extracting ${#JARS[@]} jars"
members=()
for jar in "${JARS[@]}"; do
  members+=("pyspark-$PYSPARK_VERSION/deps/jars/$jar")
done
mkdir -p "$WORK/x"
tar --no-same-owner -xzf "$TARBALL" -C "$WORK/x" "${members[@]}"
rm -f "$TARBALL"

rm -rf "$STAGE"
mkdir -p "$STAGE"
for jar in "${JARS[@]}"; do
  mv "$WORK/x/pyspark-$PYSPARK_VERSION/deps/jars/$jar" "$STAGE/$jar"
done
chmod 0644 "$STAGE"/*.jar

# Replace a partial install (no marker) atomically, then write the marker last.
rm -rf "$JARS_DIR"
mv "$STAGE" "$JARS_DIR"
date -u +%Y-%m-%dT%H:%M:%SZ >"$MARKER"

echo "Hadoop 2.7.3 jars installed in $JARS_DIR"
