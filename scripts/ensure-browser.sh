#!/usr/bin/env bash
# Test setup: Debian's Chromium and a CJK font for the browser tests (no browser download).
set -euo pipefail
have_font() { fc-list 2>/dev/null | grep -qiE "wqy|noto sans cjk"; }
if [ -x /usr/bin/chromium ] && have_font; then exit 0; fi
if [ "$(id -u)" != "0" ]; then
  echo "ensure-browser: chromium or a CJK font is missing and this is not root;" \
       "install 'chromium fonts-wqy-microhei' (browser tests will be skipped)" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq chromium fonts-wqy-microhei >/dev/null
