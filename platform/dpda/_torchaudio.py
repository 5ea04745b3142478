"""torchaudio, imported through the install check.

Why: every dpda module that needs torchaudio imports it from here first, so a torch/torchaudio
pair that cannot load together fails with one line naming both versions and the fix (an
InstallError) instead of a raw OSError about an undefined C++ symbol.
"""

from dpda.install import import_torchaudio

torchaudio = import_torchaudio()
