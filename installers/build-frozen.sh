#!/usr/bin/env bash
# Build the one-folder frozen QuantLens with PyInstaller and smoke-test it headless.
#   installers/build-frozen.sh            # -> dist/quantlens/quantlens
# Needs: pip install pyinstaller (and QuantLens's own dependencies in the same Python).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
start=$(date +%s)
"$PYTHON" -m PyInstaller --noconfirm --clean --log-level WARN \
    --distpath dist --workpath build/pyinstaller installers/quantlens.spec
end=$(date +%s)
echo "built dist/quantlens in $((end - start)) s, $(du -sh dist/quantlens | cut -f1)"

if [[ "${SKIP_SMOKE:-0}" != "1" && "$(uname)" != "Darwin" ]]; then
    export QUANTLENS_HOME
    QUANTLENS_HOME=$(mktemp -d)
    trap 'rm -rf "$QUANTLENS_HOME"' EXIT
    QT_QPA_PLATFORM=offscreen timeout 120 dist/quantlens/quantlens --smoke-test
    echo "smoke test passed"
    timeout 120 dist/quantlens/quantlens --version
fi
