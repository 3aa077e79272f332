#!/usr/bin/env bash
# Install the Debian packages ppdock needs to build and test. Idempotent: does nothing when they
# are present. As root it runs apt-get; otherwise it prints the command to run.
#   build:  gcc make pkg-config liblmdb-dev libyaml-dev libxxhash-dev zlib1g-dev libopenblas-dev
#   tools:  lmdb-utils (mdb_stat, mdb_copy for inspection), shellcheck (make lint),
#           clang-format (make format), clang + libclang-rt-dev (make fuzz)
# The CUDA toolkit is not a Debian package here; when /usr/local/cuda/bin/nvcc exists, make
# builds the CUDA part too.
set -euo pipefail
packages=(gcc make pkg-config liblmdb-dev libyaml-dev libxxhash-dev zlib1g-dev libopenblas-dev
          lmdb-utils shellcheck clang-format clang libclang-rt-dev)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "install-deps: all ${#packages[@]} packages present"
    exit 0
fi
cmd="apt-get update && apt-get install -y --no-install-recommends ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: missing: ${missing[*]}"
    echo "install-deps: run as root:  $cmd"
    exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
