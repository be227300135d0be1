#!/usr/bin/env bash
# Build QuantLens.app on macOS: PyInstaller one-folder build wrapped in an .app bundle with our
# Info.plist and icon, then (optionally) a .dmg. Unsigned: for distribution, sign and notarize
# with your Developer ID (codesign --deep --options runtime; xcrun notarytool submit).
#
#   installers/macos/make-app.sh          # -> dist/QuantLens.app (+ dist/QuantLens-<ver>.dmg with --dmg)
set -euo pipefail
cd "$(dirname "$0")/../.."
VERSION=$(python3 -c "import tomllib;print(tomllib.load(open('pyproject.toml','rb'))['project']['version'])")
ICONSET=build/quantlens.iconset
APP=dist/QuantLens.app

# 1. the .icns from our PNGs (iconutil ships with macOS)
rm -rf "$ICONSET" && mkdir -p "$ICONSET"
for s in 16 32 128 256 512; do
    cp "resources/icons/quantlens-$s.png" "$ICONSET/icon_${s}x${s}.png"
done
for s in 16 128 256; do
    cp "resources/icons/quantlens-$((s * 2)).png" "$ICONSET/icon_${s}x${s}@2x.png"
done
cp resources/icons/quantlens-64.png "$ICONSET/icon_32x32@2x.png"
iconutil -c icns "$ICONSET" -o resources/icons/quantlens.icns

# 2. the frozen one-folder build
python3 -m PyInstaller --noconfirm --clean --distpath dist --workpath build/pyinstaller \
    installers/quantlens.spec

# 3. the bundle: Contents/MacOS holds the one-folder build, Info.plist says how to start it
rm -rf "$APP"
mkdir -p "$APP/Contents/MacOS" "$APP/Contents/Resources"
cp -a dist/quantlens/. "$APP/Contents/MacOS/"
cp resources/icons/quantlens.icns "$APP/Contents/Resources/quantlens.icns"
sed "s/@VERSION@/$VERSION/g" installers/macos/Info.plist > "$APP/Contents/Info.plist"
printf 'APPL????' > "$APP/Contents/PkgInfo"
echo "built $APP ($(du -sh "$APP" | cut -f1))"

# 4. smoke test: the window opens and the app exits 0
QT_QPA_PLATFORM=offscreen "$APP/Contents/MacOS/quantlens" --smoke-test

if [[ "${1:-}" == "--dmg" ]]; then
    hdiutil create -volname QuantLens -srcfolder "$APP" -ov -format UDZO "dist/QuantLens-$VERSION.dmg"
fi
