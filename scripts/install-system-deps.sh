#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages that camfleet's demo and tests drive, only those missing.
#
# Usage: install-system-deps.sh [--strict] [--check] [--only GROUP[,GROUP...]]
#   groups:   venv ffmpeg mosquitto gstreamer chromium firefox (default: all)
#   --check   only report what is missing; exit 1 if anything is
#   --strict  exit 1 when something is missing and cannot be installed (CI); otherwise warn, exit 0
# Presence is detected by commands, files and imports, so a complete machine does no apt work.
set -euo pipefail

ALL_GROUPS=(venv ffmpeg mosquitto gstreamer chromium firefox)
# The interpreter `make` builds the virtualenv with; the GStreamer peers run under Debian's own,
# because only it sees the python3-gi bindings.
PYTHON=${PYTHON:-python3}
GST_PYTHON=/usr/bin/python3
GI_RTSP="import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"

log() { echo "install-system-deps: $*"; }
die() { echo "install-system-deps: $*" >&2; exit 2; }

usage() { sed -n '2,8s/^# \{0,1\}//p' "$0"; }

strict=0
check_only=0
groups=("${ALL_GROUPS[@]}")
while (($#)); do
    case $1 in
        --strict) strict=1 ;;
        --check) check_only=1 ;;
        --only)
            (($# > 1)) || die "--only needs a comma-separated list of groups"
            IFS=, read -r -a groups <<<"$2"
            shift
            ;;
        --only=*) IFS=, read -r -a groups <<<"${1#--only=}" ;;
        -h | --help) usage; exit 0 ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
    shift
done
for g in "${groups[@]}"; do
    [[ " ${ALL_GROUPS[*]} " == *" $g "* ]] || die "unknown group '$g' (groups: ${ALL_GROUPS[*]})"
done

# --- probes: each succeeds when the thing is present --------------------------------------------
has_cmd() {
    local c
    for c in "$@"; do command -v "$c" >/dev/null 2>&1 || return 1; done
}
has_any_cmd() {
    local c
    for c in "$@"; do command -v "$c" >/dev/null 2>&1 && return 0; done
    return 1
}
py_can() { "$1" -c "$2" >/dev/null 2>&1; }
has_gst() {
    local e
    for e in "$@"; do gst-inspect-1.0 --exists "$e" >/dev/null 2>&1 || return 1; done
}
has_glob() { compgen -G "$1" >/dev/null; }

missing=()
# need GROUP PACKAGE PROBE...: record PACKAGE as missing when GROUP is selected and PROBE fails.
need() {
    local group=$1 pkg=$2
    shift 2
    [[ " ${groups[*]} " == *" $group "* ]] || return 0
    "$@" || missing+=("$pkg")
}

scan() {
    missing=()
    need venv python3-venv py_can "$PYTHON" "import venv, ensurepip"
    need ffmpeg ffmpeg has_cmd ffmpeg ffprobe
    # Only the broker binary: tests and the demo start their own brokers.
    need mosquitto mosquitto has_any_cmd /usr/sbin/mosquitto mosquitto
    need gstreamer gstreamer1.0-tools has_cmd gst-launch-1.0 gst-inspect-1.0
    need gstreamer python3-gi py_can "$GST_PYTHON" "import gi"
    need gstreamer gir1.2-gst-rtsp-server-1.0 py_can "$GST_PYTHON" "$GI_RTSP"
    need gstreamer gstreamer1.0-rtsp has_gst rtspclientsink
    need gstreamer gstreamer1.0-plugins-base has_gst videotestsrc videoconvert
    need gstreamer gstreamer1.0-plugins-good has_gst qtdemux rtspsrc rtph264pay rtph264depay
    need gstreamer gstreamer1.0-plugins-bad has_gst h264parse
    need gstreamer gstreamer1.0-plugins-ugly has_gst x264enc
    need gstreamer gstreamer1.0-libav has_gst avdec_h264
    need chromium chromium has_any_cmd chromium chromium-browser
    need firefox firefox-esr has_cmd firefox-esr
    # Debian's Firefox decodes H.264 (the live view's codec) only through the system's libavcodec,
    # which it merely recommends; ffmpeg pulls in the release's current one whatever its soname.
    need firefox ffmpeg has_glob '/usr/lib/*/libavcodec.so.[0-9]*'
}

# --- installing ---------------------------------------------------------------------------------
as_root() {
    if ((EUID == 0)); then
        "$@"
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo -n "$@"
    else
        return 1
    fi
}
apt() { as_root env DEBIAN_FRONTEND=noninteractive apt-get -q -y "$@"; }

install_missing() {
    if ! command -v apt-get >/dev/null 2>&1; then
        log "apt-get not found: cannot install packages on this system"
        return 1
    fi
    if ! as_root true; then
        log "not root and no passwordless sudo: cannot install packages"
        return 1
    fi
    log "installing: ${missing[*]}"
    apt update >/dev/null || return 1
    # One package the distribution lacks (e.g. Ubuntu names chromium differently) must not
    # block the others, so a failed batch is retried package by package.
    if ! apt install --no-install-recommends "${missing[@]}"; then
        local pkg
        for pkg in "${missing[@]}"; do apt install --no-install-recommends "$pkg" || true; done
    fi
}

# Debian's package starts and enables the broker it installs; camfleet only wants the binary
# (a system broker on port 1883 would collide with the demo's own), so undo that.
quiet_mosquitto_service() {
    if [[ -d /run/systemd/system ]] && has_any_cmd systemctl; then
        as_root systemctl disable --now mosquitto.service >/dev/null 2>&1 || true
    fi
}

report_missing() {
    log "missing: ${missing[*]}"
    echo "  install with: sudo apt-get install --no-install-recommends ${missing[*]}"
    if [[ " ${missing[*]} " == *" chromium "* ]]; then
        echo "  (on Ubuntu the browser package is chromium-browser)"
    fi
    if [[ " ${missing[*]} " == *" firefox-esr "* ]]; then
        echo "  (Ubuntu has no firefox-esr package: its Firefox is a snap, which the tests do not drive)"
    fi
}

scan
if ((${#missing[@]} == 0)); then
    log "all present (${groups[*]})"
    exit 0
fi
if ((check_only)); then
    report_missing
    exit 1
fi

wanted_mosquitto=0
[[ " ${missing[*]} " == *" mosquitto "* ]] && wanted_mosquitto=1
install_missing || true
scan
if ((wanted_mosquitto)) && [[ " ${missing[*]} " != *" mosquitto "* ]]; then
    quiet_mosquitto_service
fi
if ((${#missing[@]} == 0)); then
    log "installed; all present (${groups[*]})"
    exit 0
fi
report_missing
if ((strict)); then
    exit 1
fi
log "warning: continuing without them; tests that need them will skip"
