# Build the frozen app and the installer on Windows. Needs Python with QuantLens's dependencies,
# `pip install pyinstaller`, and Inno Setup 6 (iscc.exe on PATH or in its default folder).
$ErrorActionPreference = "Stop"
Set-Location (Join-Path $PSScriptRoot "..\..")
$version = (py -c "import tomllib;print(tomllib.load(open('pyproject.toml','rb'))['project']['version'])").Trim()
py installers\render_icons.py
py -m PyInstaller --noconfirm --clean --distpath dist --workpath build\pyinstaller installers\quantlens.spec
$env:QT_QPA_PLATFORM = "offscreen"
& dist\quantlens\quantlens.exe --smoke-test
if ($LASTEXITCODE -ne 0) { throw "smoke test failed" }
Remove-Item Env:\QT_QPA_PLATFORM
$iscc = (Get-Command iscc -ErrorAction SilentlyContinue).Source
if (-not $iscc) { $iscc = "${env:ProgramFiles(x86)}\Inno Setup 6\ISCC.exe" }
& $iscc "/DMyAppVersion=$version" installers\windows\quantlens.iss
Write-Host "dist\QuantLens-$version-setup.exe"
