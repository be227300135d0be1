#!/usr/bin/env bash
# Lay out an AppDir from the frozen build, then pack it with appimagetool if it is installed.
#
#   installers/build-frozen.sh                 # first: dist/quantlens/
#   installers/linux/make-appimage.sh          # -> build/QuantLens.AppDir (+ dist/QuantLens-<ver>-x86_64.AppImage)
#
# appimagetool is not bundled (it is a download: https://github.com/AppImage/appimagetool/releases);
# put it on PATH or set APPIMAGETOOL=/path/to/appimagetool-x86_64.AppImage. Without it the script
# stops after the AppDir, which already runs as build/QuantLens.AppDir/AppRun.
#
# AppDir layout (the AppImage spec's minimum, plus hicolor icons):
#   AppRun                      -> starts usr/lib/quantlens/quantlens with the arguments given
#   quantlens.desktop           the menu entry (Exec=quantlens)
#   quantlens.png, .DirIcon     256 px icon
#   usr/lib/quantlens/          the PyInstaller one-folder build
#   usr/share/applications/quantlens.desktop
#   usr/share/icons/hicolor/<size>/apps/quantlens.png, scalable/apps/quantlens.svg
set -euo pipefail
cd "$(dirname "$0")/../.."
VERSION=$(python3 -c "import tomllib;print(tomllib.load(open('pyproject.toml','rb'))['project']['version'])")
ARCH=${ARCH:-$(uname -m)}
APPDIR=build/QuantLens.AppDir
[[ -x dist/quantlens/quantlens ]] || { echo "run installers/build-frozen.sh first" >&2; exit 1; }

rm -rf "$APPDIR"
mkdir -p "$APPDIR/usr/lib" "$APPDIR/usr/share/applications"
cp -a dist/quantlens "$APPDIR/usr/lib/quantlens"
cat > "$APPDIR/AppRun" <<'SH'
#!/bin/sh
HERE="$(dirname "$(readlink -f "$0")")"
exec "$HERE/usr/lib/quantlens/quantlens" "$@"
SH
chmod +x "$APPDIR/AppRun"
sed -e 's|@EXEC@|quantlens|' -e '/^TryExec=/d' installers/linux/quantlens.desktop > "$APPDIR/quantlens.desktop"
cp "$APPDIR/quantlens.desktop" "$APPDIR/usr/share/applications/"
for s in 16 24 32 48 64 128 256 512; do
    mkdir -p "$APPDIR/usr/share/icons/hicolor/${s}x${s}/apps"
    cp resources/icons/quantlens-$s.png "$APPDIR/usr/share/icons/hicolor/${s}x${s}/apps/quantlens.png"
done
mkdir -p "$APPDIR/usr/share/icons/hicolor/scalable/apps"
cp resources/icons/quantlens.svg "$APPDIR/usr/share/icons/hicolor/scalable/apps/"
cp resources/icons/quantlens-256.png "$APPDIR/quantlens.png"
ln -sf quantlens.png "$APPDIR/.DirIcon"
echo "AppDir ready: $APPDIR ($(du -sh "$APPDIR" | cut -f1))"

TOOL=${APPIMAGETOOL:-$(command -v appimagetool || true)}
if [[ -z "$TOOL" ]]; then
    echo "appimagetool not found: stopping at the AppDir (see the comment at the top)."
    exit 0
fi
OUT="dist/QuantLens-$VERSION-$ARCH.AppImage"
ARCH="$ARCH" "$TOOL" --no-appstream "$APPDIR" "$OUT"
echo "built $OUT ($(du -sh "$OUT" | cut -f1))"
