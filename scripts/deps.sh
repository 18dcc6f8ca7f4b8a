#!/usr/bin/env bash
# Installs the Debian packages the project needs to build, run and test.
# Idempotent: packages already present are not touched, so `make build` stays fast.
set -euo pipefail

pkgs=(
  build-essential meson ninja-build pkg-config clang clang-format
  libmicrohttpd-dev libjansson-dev libsqlite3-dev libsodium-dev nettle-dev libcmocka-dev
  libcurl4-openssl-dev libarchive-dev libfftw3-dev libopenblas-dev libdnnl-dev
  libavformat-dev libavcodec-dev libswresample-dev libavutil-dev libsoxr-dev
  libebur128-dev librubberband-dev libxml2-dev libpq-dev postgresql
  ffmpeg yt-dlp curl unzip python3 pyflakes3 python3-psycopg2 python3-mido chromium
  fluidsynth fluid-soundfont-gm libqm-dsp-dev libaubio-dev libsndfile1-dev
)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
# Node.js may come from Debian or another vendor's package: only ask for Debian's when
# there is no node at all (its npm conflicts with vendor builds that bundle npm).
command -v node >/dev/null || missing+=(nodejs npm)
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
