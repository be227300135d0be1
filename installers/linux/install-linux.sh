#!/usr/bin/env bash
# Install QuantLens for this user: a menu entry (.desktop) and icons, no root needed.
#
#   installers/linux/install-linux.sh                 # use the `quantlens` on PATH (pip install)
#   installers/linux/install-linux.sh --exec /opt/quantlens/quantlens   # a frozen build
#   installers/linux/install-linux.sh --uninstall
#
# Files go to ~/.local/share/applications and ~/.local/share/icons/hicolor (XDG_DATA_HOME
# respected); a .gguf MIME type is registered so GGUF files open in QuantLens on a double-click.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
DATA="${XDG_DATA_HOME:-$HOME/.local/share}"
APPS="$DATA/applications"
ICONS="$DATA/icons/hicolor"
MIME="$DATA/mime"
SIZES="16 24 32 48 64 128 256 512"
EXEC=""
MODE=install

while [[ $# -gt 0 ]]; do
    case "$1" in
        --exec) EXEC="$2"; shift 2 ;;
        --uninstall) MODE=uninstall; shift ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
    esac
done

refresh() {
    command -v update-desktop-database >/dev/null && update-desktop-database -q "$APPS" || true
    command -v update-mime-database >/dev/null && update-mime-database "$MIME" || true
    command -v gtk-update-icon-cache >/dev/null && gtk-update-icon-cache -q -t "$ICONS" || true
}

if [[ "$MODE" == uninstall ]]; then
    rm -f "$APPS/quantlens.desktop" "$MIME/packages/quantlens-gguf.xml"
    for s in $SIZES; do rm -f "$ICONS/${s}x${s}/apps/quantlens.png"; done
    rm -f "$ICONS/scalable/apps/quantlens.svg"
    refresh
    echo "QuantLens removed from the applications menu."
    exit 0
fi

if [[ -z "$EXEC" ]]; then
    if [[ -x "$ROOT/dist/quantlens/quantlens" ]]; then
        EXEC="$ROOT/dist/quantlens/quantlens"
    elif command -v quantlens >/dev/null; then
        EXEC="$(command -v quantlens)"
    else
        echo "No quantlens found: pip install . first, build dist/ with installers/build-frozen.sh," >&2
        echo "or pass --exec /path/to/quantlens." >&2
        exit 1
    fi
fi
EXEC="$(cd "$(dirname "$EXEC")" && pwd)/$(basename "$EXEC")"
[[ -x "$EXEC" ]] || { echo "$EXEC is not executable" >&2; exit 1; }

mkdir -p "$APPS" "$ICONS/scalable/apps" "$MIME/packages"
for s in $SIZES; do
    mkdir -p "$ICONS/${s}x${s}/apps"
    install -m 644 "$ROOT/resources/icons/quantlens-$s.png" "$ICONS/${s}x${s}/apps/quantlens.png"
done
install -m 644 "$ROOT/resources/icons/quantlens.svg" "$ICONS/scalable/apps/quantlens.svg"
# quote the path for the Exec key (spaces are allowed inside double quotes)
sed -e "s|@EXEC@|\"$EXEC\"|" -e "s|@TRYEXEC@|$EXEC|" "$HERE/quantlens.desktop" > "$APPS/quantlens.desktop"
chmod 644 "$APPS/quantlens.desktop"
cat > "$MIME/packages/quantlens-gguf.xml" <<'XML'
<?xml version="1.0" encoding="UTF-8"?>
<mime-info xmlns="http://www.freedesktop.org/standards/shared-mime-info">
  <mime-type type="application/x-gguf">
    <comment>GGUF model</comment>
    <magic priority="50"><match type="string" offset="0" value="GGUF"/></magic>
    <glob pattern="*.gguf"/>
  </mime-type>
</mime-info>
XML
refresh
echo "QuantLens installed for ${USER:-$(id -un)}: look for it in the applications menu (runs $EXEC)."
