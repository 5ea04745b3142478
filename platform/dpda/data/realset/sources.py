"""Bona fide recordings of the real-audio set: real people's speech shipped in Debian packages.

Why these: they install offline from the package archive this project already uses, they come
with transcripts (so every synthesizer can read exactly the same text), and their licences allow
redistribution. The Asterisk core prompts are the bulk (one professional speaker per language,
16 kHz G.722); a few tiny multi-speaker English recordings (pocketsphinx's test data, ALSA's
channel names) serve only as a speaker-shift probe.

Each source knows which Debian package ships its audio and which ships its text, so a missing
one is named with the exact `apt-get install` line. Prompts whose text is not speech
("[ascending tones]", "(5 seconds of silence)") or whose bracketed words may or may not be spoken
are left out, so that every kept recording has a transcript that a synthesizer can read.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dpda.data.realset.system import shared

# Below $DPDA_REALSET_PACKAGE_ROOT when it is set (dpda.data.realset.system), else below /.
ASTERISK_ROOT = shared("asterisk", "sounds")
DOC_ROOT = shared("doc")
POCKETSPHINX_ROOT = shared("pocketsphinx", "test", "data")
ALSA_ROOT = shared("sounds", "alsa")


@dataclass(frozen=True)
class Recording:
    """One bona fide recording with its transcript."""

    utt: str  # unique id, no whitespace
    path: Path
    text: str
    prompt: str  # the prompt's name; translations of one prompt share it (one partition for all)
    speaker: str
    gender: str  # female / male / unknown
    language: str  # ISO 639-1
    package: str  # the Debian package that ships the audio
    codec: str  # how the file is coded on disk: "g722" (decoded as is) or "pcm"
    probe: bool  # a speaker-shift probe source: never trained on


@dataclass(frozen=True)
class Missing:
    """A source or voice that is not installed, and what installs it."""

    what: str
    apt: tuple[str, ...] = ()
    pip: tuple[str, ...] = ()
    note: str = ""


# language -> (folder under ASTERISK_ROOT, speaker as the package names them, gender as the folder says)
ASTERISK_VOICES: dict[str, tuple[str, str, str]] = {
    "en": ("en_US_f_Allison", "Allison", "female"),
    "es": ("es_MX_f_Allison", "Allison", "female"),
    "fr": ("fr_CA_f_June", "June", "female"),
    "it": ("it_IT_m_Carlo", "Carlo", "male"),
    "ru": ("ru_RU_f_IvrvoiceRU", "IvrvoiceRU", "female"),
}
_BRACKETED = re.compile(r"\[[^\]]*\]|<[^>]*>|\([^)]*\)")


def clean_prompt_text(text: str) -> str | None:
    """The words a synthesizer should read, or None when the prompt is not plain speech.

    Bracketed parts are stage directions or the symbol being named ("at [@]" says "at"); when one
    holds letters ("Sus saludos [temporales] ...") we cannot know whether it is spoken, so the
    prompt is dropped rather than read with a possibly wrong text.
    """
    parts = _BRACKETED.findall(text)
    if any(any(ch.isalpha() for ch in p) for p in parts):
        return None
    words = " ".join(_BRACKETED.sub(" ", text).split())
    return words if any(ch.isalpha() for ch in words) else None


def read_prompt_texts(path: Path) -> dict[str, str]:
    """`name: text` lines of an Asterisk core-sounds-LANG.txt(.gz); `;` starts a comment."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8-sig") as fh:
        lines = fh.read().splitlines()
    texts: dict[str, str] = {}
    for line in lines:
        if not line.strip() or line.lstrip().startswith(";"):
            continue
        name, sep, text = line.partition(":")
        if sep and name.strip():
            texts.setdefault(name.strip(), text.strip())
    return texts


def _asterisk(language: str) -> Callable[[], tuple[list[Recording], list[Missing]]]:
    folder, speaker, gender = ASTERISK_VOICES[language]
    audio_pkg, text_pkg = f"asterisk-core-sounds-{language}-g722", f"asterisk-core-sounds-{language}"

    def find() -> tuple[list[Recording], list[Missing]]:
        audio_dir = ASTERISK_ROOT / folder
        text_file = DOC_ROOT / text_pkg / f"core-sounds-{language}.txt.gz"
        missing = []
        if not audio_dir.is_dir():
            missing.append(Missing(f"{language} prompts by {speaker} (G.722 audio)", apt=(audio_pkg,)))
        if not text_file.is_file():
            missing.append(Missing(f"{language} prompt texts", apt=(text_pkg,),
                                   note=f"{text_file} must exist (a dpkg path-exclude on /usr/share/doc removes it)"))
        if missing:
            return [], missing
        texts = read_prompt_texts(text_file)
        found = []
        for path in sorted(audio_dir.rglob("*.g722")):
            name = path.relative_to(audio_dir).with_suffix("").as_posix()
            text = clean_prompt_text(texts.get(name, ""))
            if text is None:
                continue
            found.append(Recording(f"ast-{language}-{name.replace('/', '_')}", path, text, name, speaker, gender,
                                   language, audio_pkg, "g722", probe=False))
        return found, []

    return find


def _pocketsphinx() -> tuple[list[Recording], list[Missing]]:
    """cards/*.wav and librivox/*.wav with their `<s> text </s> (id)` transcriptions, and
    goforward.raw (16 kHz, 16-bit little-endian PCM; pocketsphinx's own test expects the text)."""
    root, pkg = POCKETSPHINX_ROOT, "pocketsphinx-testdata"
    if not root.is_dir():
        return [], [Missing("pocketsphinx test recordings (3 English speakers)", apt=(pkg,))]
    found = []
    for folder, transcript in (("cards", "cards.transcription"), ("librivox", "transcription")):
        lines = (root / folder / transcript).read_text(encoding="utf-8").splitlines()
        for line in lines:
            m = re.fullmatch(r"\s*<s>(.*)</s>\s*\((\S+)\)\s*", line)
            if not m or not (root / folder / f"{m.group(2)}.wav").is_file():
                continue
            file_id = m.group(2)
            short = file_id.rsplit("-", 1)[-1]
            found.append(Recording(f"ps-{folder}-{short}", root / folder / f"{file_id}.wav", " ".join(m.group(1).split()),
                                   f"ps-{folder}-{short}", f"ps-{folder}", "unknown", "en", pkg, "pcm", probe=True))
    if (root / "goforward.raw").is_file():
        found.append(Recording("ps-goforward", root / "goforward.raw", "go forward ten meters", "ps-goforward",
                               "ps-goforward", "unknown", "en", pkg, "pcm", probe=True))
    return found, []


def _alsa() -> tuple[list[Recording], list[Missing]]:
    """ALSA's speaker-test channel names (48 kHz): the file name is the text."""
    pkg = "alsa-utils"
    files = sorted(p for p in ALSA_ROOT.glob("*.wav") if p.stem != "Noise") if ALSA_ROOT.is_dir() else []
    if not files:
        return [], [Missing("ALSA channel-name recordings (1 English speaker)", apt=(pkg,))]
    return [Recording(f"alsa-{p.stem.lower()}", p, p.stem.replace("_", " "), f"alsa-{p.stem.lower()}", "alsa",
                      "unknown", "en", pkg, "pcm", probe=True) for p in files], []


SOURCES: dict[str, Callable[[], tuple[list[Recording], list[Missing]]]] = {
    **{f"asterisk-{lang}": _asterisk(lang) for lang in ASTERISK_VOICES},
    "pocketsphinx": _pocketsphinx,
    "alsa": _alsa,
}


def find_recordings(languages: set[str] | None = None) -> tuple[list[Recording], list[Missing]]:
    """Every installed bona fide recording (of `languages`, default all) and what is missing."""
    recordings: list[Recording] = []
    missing: list[Missing] = []
    for name, find in SOURCES.items():
        if languages is not None and name.startswith("asterisk-") and name.removeprefix("asterisk-") not in languages:
            continue
        if languages is not None and not name.startswith("asterisk-") and "en" not in languages:
            continue
        found, lacking = find()
        recordings += found
        missing += lacking
    return recordings, missing
