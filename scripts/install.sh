#!/usr/bin/env bash
# Install MiniMind Studio into ./.venv.
#   bash scripts/install.sh          the app, the trainer core and the CLI
#   bash scripts/install.sh --dev    the same plus the test tools
# Debian/Ubuntu packages that Qt (offscreen and under X), llama-cpp-python's build and the screenshot script need
# are installed with apt-get when they are missing and we are root (or sudo works); set MINIMIND_SKIP_APT=1 to skip.
# TORCH_SPEC picks the torch build (default torch==2.13.0; e.g. TORCH_SPEC="torch --index-url
# https://download.pytorch.org/whl/cu128" for a CUDA build).
set -euo pipefail
cd "$(dirname "$0")/.."

DEV=0
[ "${1:-}" = "--dev" ] && DEV=1

APT_PACKAGES=(
  # Qt offscreen
  libgl1 libegl1 libxkbcommon0 libfontconfig1 libglib2.0-0 libdbus-1-3
  # a real window under X / Xvfb (screenshots)
  xvfb xauth libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-shape0
  libxcb-image0 libxcb-render-util0 libxcb-randr0 libxcb-xkb1 libx11-xcb1
  # llama-cpp-python builds from source
  build-essential
  # Chinese text (a quarter of the demo data and chats): without a CJK font Qt draws boxes. 1.6 MB download,
  # 5 MB installed (fonts-noto-cjk: 57 MB / 91 MB); Qt finds it through fontconfig as a fallback, no app setting.
  fonts-wqy-microhei
)
# --dev: tests/test_slurm.py starts a single-host Slurm cluster (slurmctld + slurmd, munge) on 127.0.0.1
[ $DEV = 1 ] && APT_PACKAGES+=(slurm-wlm munge)
# --dev: tests/test_packaging.py finds the bundle's windows under Xvfb with xwininfo
[ $DEV = 1 ] && APT_PACKAGES+=(x11-utils)
# --dev: tests/test_webdemo_browser.py drives the web demo in a real browser (Playwright with Debian's chromium)
[ $DEV = 1 ] && APT_PACKAGES+=(chromium)

install_apt() {
  [ "${MINIMIND_SKIP_APT:-0}" = "1" ] && return 0
  command -v apt-get >/dev/null 2>&1 || { echo "install: no apt-get; install the Qt libraries listed in README.md yourself" >&2; return 0; }
  local missing=() pkg
  for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  python3 -m venv --help >/dev/null 2>&1 || missing+=(python3-venv)
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
      echo "install: missing Debian packages (${missing[*]}); run as root or install them" >&2; return 0; fi
  fi
  echo "install: apt-get install ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

install_apt

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
VPY=.venv/bin/python
"$VPY" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
# torch first and pinned: an open range would pull a multi-GB CUDA build where only the CPU one is wanted.
"$VPY" -c "import torch" >/dev/null 2>&1 || "$VPY" -m pip install -q ${TORCH_SPEC:-torch==2.13.0}
if [ $DEV = 1 ]; then
  "$VPY" -m pip install -q -e ".[dev]"
  # SkyPilot in a venv of its own (.venv/skypilot): it pins click<8.2 and uvicorn<0.36, which transformers'
  # huggingface-hub and our server cannot share. tests/test_launch_targets.py validates task YAML with its parser.
  .venv/skypilot/bin/python -c "import sky" >/dev/null 2>&1 || {
    "$PY" -m venv .venv/skypilot && .venv/skypilot/bin/python -m pip install -q "skypilot==0.14.1"; }
else
  "$VPY" -m pip install -q -e .
fi
echo "install: done ($("$VPY" -c 'import torch, sys; print(f"python {sys.version.split()[0]}, torch {torch.__version__}")'))" >&2
