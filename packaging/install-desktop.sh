#!/usr/bin/env bash
# Add the built bundle to the Linux desktop menu for the current user (no root needed).
#   packaging/install-desktop.sh [BUNDLE_DIR]     (default: dist/MiniMindStudio)
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
APP="$(cd "${1:-$REPO/dist/MiniMindStudio}" && pwd)"
if [[ ! -x "$APP/MiniMindStudio" ]]; then
  echo "install-desktop.sh: no $APP/MiniMindStudio; build it first with packaging/build.sh" >&2
  exit 2
fi
DATA="${XDG_DATA_HOME:-$HOME/.local/share}"
for size in 16 24 32 48 64 128 256 512; do
  dir="$DATA/icons/hicolor/${size}x${size}/apps"
  mkdir -p "$dir"
  cp "$REPO/resources/icons/minimind-studio-$size.png" "$dir/minimind-studio.png"
done
mkdir -p "$DATA/applications"
# The committed entry runs `MiniMindStudio` from PATH; point it at this bundle instead.
sed "s|^Exec=.*|Exec=\"$APP/MiniMindStudio\" %F|" "$REPO/resources/minimind-studio.desktop" \
  > "$DATA/applications/minimind-studio.desktop"
command -v update-desktop-database >/dev/null && update-desktop-database "$DATA/applications" || true
command -v gtk-update-icon-cache >/dev/null && gtk-update-icon-cache -q "$DATA/icons/hicolor" || true
echo "installed $DATA/applications/minimind-studio.desktop -> $APP/MiniMindStudio"
