; Inno Setup script for QuantLens (Windows, per-user install, no admin rights needed).
;
;   1. On Windows, build the frozen app:  py -m PyInstaller --noconfirm --distpath dist
;                                          --workpath build\pyinstaller installers\quantlens.spec
;   2. Compile this script:               iscc /DMyAppVersion=0.1.0 installers\windows\quantlens.iss
;      (build-windows.ps1 beside it reads the version from pyproject.toml and does both.)
;   -> dist\QuantLens-<version>-setup.exe
;
; The installer adds a Start-menu entry, an optional desktop icon, "Open with QuantLens" for
; .gguf files, and an uninstaller. Settings and results (%LOCALAPPDATA%\quantlens) are kept on
; uninstall unless the user ticks the box.

#ifndef MyAppVersion
  #define MyAppVersion "0.1.0"
#endif
#define MyAppName "QuantLens"
#define MyAppExe "quantlens.exe"
#define Root ".." + "\.."

[Setup]
AppId={{6B0E3C9A-3D5E-4C1F-9A57-2F1C0B7D8E41}
AppName={#MyAppName}
AppVersion={#MyAppVersion}
AppPublisher=QuantLens contributors
AppComments=Which llama.cpp quantization fits your GPUs, and what it costs in quality and speed
DefaultDirName={localappdata}\Programs\{#MyAppName}
DefaultGroupName={#MyAppName}
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
OutputDir={#Root}\dist
OutputBaseFilename=QuantLens-{#MyAppVersion}-setup
SetupIconFile={#Root}\resources\icons\quantlens.ico
UninstallDisplayIcon={app}\{#MyAppExe}
Compression=lzma2/max
SolidCompression=yes
WizardStyle=modern
ChangesAssociations=yes
DisableProgramGroupPage=yes

[Languages]
Name: "english"; MessagesFile: "compiler:Default.isl"

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked
Name: "gguf"; Description: "Open .gguf files with QuantLens"; GroupDescription: "File types:"

[Files]
Source: "{#Root}\dist\quantlens\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{group}\{#MyAppName}"; Filename: "{app}\{#MyAppExe}"
Name: "{autodesktop}\{#MyAppName}"; Filename: "{app}\{#MyAppExe}"; Tasks: desktopicon

[Registry]
Root: HKA; Subkey: "Software\Classes\.gguf\OpenWithProgids"; ValueType: string; ValueName: "QuantLens.gguf"; ValueData: ""; Flags: uninsdeletevalue; Tasks: gguf
Root: HKA; Subkey: "Software\Classes\QuantLens.gguf"; ValueType: string; ValueName: ""; ValueData: "GGUF model"; Flags: uninsdeletekey; Tasks: gguf
Root: HKA; Subkey: "Software\Classes\QuantLens.gguf\DefaultIcon"; ValueType: string; ValueName: ""; ValueData: "{app}\{#MyAppExe},0"; Tasks: gguf
Root: HKA; Subkey: "Software\Classes\QuantLens.gguf\shell\open\command"; ValueType: string; ValueName: ""; ValueData: """{app}\{#MyAppExe}"" --open ""%1"""; Tasks: gguf

[Run]
Filename: "{app}\{#MyAppExe}"; Description: "{cm:LaunchProgram,{#MyAppName}}"; Flags: nowait postinstall skipifsilent

[UninstallDelete]
Type: filesandordirs; Name: "{localappdata}\quantlens"; Check: WantDeleteData

[Code]
function WantDeleteData(): Boolean;
begin
  Result := MsgBox('Also delete QuantLens settings, results and the unpacked demo model?',
                   mbConfirmation, MB_YESNO or MB_DEFBUTTON2) = IDYES;
end;
