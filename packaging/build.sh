#!/usr/bin/env bash
# Build the one-folder bundle dist/MiniMindStudio/ (Linux; macOS and Windows: see packaging/README.md).
#
#   packaging/build.sh                 # -> dist/MiniMindStudio/MiniMindStudio
#   DIST=/tmp/out WORK=/tmp/build packaging/build.sh
#   PYTHON=/path/to/python packaging/build.sh   # default: .venv/bin/python if present, else python3
#
# Then check it: dist/MiniMindStudio/MiniMindStudio --self-test   (opens offscreen, starts the trainer, exits 0)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# The project's .venv (the README's install) when it exists, else python3; PYTHON=... overrides both.
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$REPO/.venv/bin/python" ]]; then
    PYTHON="$REPO/.venv/bin/python"
  elif [[ -x "$REPO/.venv/Scripts/python.exe" ]]; then
    PYTHON="$REPO/.venv/Scripts/python.exe"
  else
    PYTHON=python3
  fi
fi
DIST="${DIST:-$REPO/dist}"
WORK="${WORK:-$REPO/build/pyinstaller}"

if ! "$PYTHON" -c "import PyInstaller" 2>/dev/null; then
  echo "build.sh: PyInstaller is not installed for $PYTHON; run: $PYTHON -m pip install 'pyinstaller>=6.5'" >&2
  exit 2
fi
if ! "$PYTHON" -c "import llama_cpp" 2>/dev/null; then
  echo "build.sh: llama-cpp-python is not installed; the bundle would have no GGUF chat/export check." >&2
  echo "          run: $PYTHON -m pip install llama-cpp-python   (builds from source, ~3 min)" >&2
  exit 2
fi

start=$(date +%s)
cd "$REPO"
"$PYTHON" -m PyInstaller packaging/minimind_studio.spec --noconfirm --log-level WARN \
  --distpath "$DIST" --workpath "$WORK"
end=$(date +%s)

APP="$DIST/MiniMindStudio"
if [[ "$(uname)" == "Linux" ]]; then
  # A .desktop entry and icon beside the bundle; install with packaging/install-desktop.sh
  cp resources/minimind-studio.desktop "$APP/"
  cp resources/icons/minimind-studio-256.png "$APP/minimind-studio.png"
fi
echo "built $APP in $((end - start)) s ($(du -sh "$APP" | cut -f1))"
echo "check: $APP/MiniMindStudio --self-test"
