#!/usr/bin/env bash
# Debian packages for the optional GStreamer backend and built-in RTSP server, and the
# headers PyGObject builds against. Everything else comes from PyPI. Never fatal: without
# these, Masquerade runs on PyAV alone and the GStreamer tests skip.
set -u
pkgs="gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good
gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav gir1.2-gstreamer-1.0
gir1.2-gst-plugins-base-1.0 gir1.2-gst-rtsp-server-1.0 libgirepository1.0-dev libcairo2-dev
pkg-config"
missing=""
for p in $pkgs; do
  dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install_system_deps: no apt-get; GStreamer backend unavailable (missing:$missing)" >&2
  exit 0
fi
run=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then run="sudo -n"; else
    echo "install_system_deps: not root; install these for GStreamer:$missing" >&2
    exit 0
  fi
fi
echo "install_system_deps: installing$missing" >&2
$run apt-get update -qq >/dev/null && \
  DEBIAN_FRONTEND=noninteractive $run apt-get install -y -qq --no-install-recommends $missing \
  >/dev/null || echo "install_system_deps: apt-get failed; GStreamer backend unavailable" >&2
exit 0
