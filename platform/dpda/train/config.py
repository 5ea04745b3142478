"""Training configuration: typed sections, every field validated, unknown keys rejected.

A config is YAML (safe-loaded) mapping onto the dataclasses below. Errors name the file and the
dotted key path (``demo.yaml: optim.lr: must be > 0``) so a typo never silently falls back to a
default on a cluster.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (ConfigDict, Field, SerializerFunctionWrapHandler, field_serializer, field_validator,
                      model_serializer, model_validator)

from dpda.align.aligner import AlignerSpec
from dpda.augment.params import RawBoostParams
from dpda.augment.paths import SINGLE_PATH, AugmentPath, parse_paths
from dpda.augment.pipeline import loader_leaves
from dpda.augment.spec import Compose, parse_pipeline, single_step
from dpda.dotted import set_dotted
from dpda.errors import UserError
from dpda.train.checkpoint import AverageFormula
from dpda.typed import Settings, parse, relation_error
from dpda.yaml_io import read_yaml

Positive = Annotated[int, Field(gt=0)]
MAX_INPUT_SAMPLES = 16_000 * 600  # ten minutes at 16 kHz: beyond it a crop is a typo, not a setting

ScoreKind = Literal["logit_diff", "logit1", "softmax1"]
"""What a score is, from the (batch, 2) logits (index 1 bona fide): `logit_diff` = logit[1] -
logit[0], the log-odds margin (dpda's default, invariant to a shift of both logits);
`logit1` = logit[1] alone, the score the published DPDA code writes (and, for OC-softmax, whose
logits are (0, cosine), the cosine to the bona fide center); `softmax1` = softmax(logits)[1], the
score AIR-ASVspoof writes for AM-softmax. All: higher = bona fide.
Computed by `dpda.train.inference.score_from_logits`."""
DEFAULT_SCORE: ScoreKind = "logit_diff"
PUBLISHED_SCORE: ScoreKind = "logit1"  # the published code's score: a released checkpoint's default
DevLoss = Literal["pooled", "published"]
"""How the dev loss combines its per-utterance terms (`eval.dev_loss`; `dpda.train.dev_loss`)."""
OptimParams = Literal["trainable", "published"]
"""What the optimiser receives (`optim.params`; `dpda.train.optim_params`)."""
SCORE_MEANING: dict[str, str] = {"logit_diff": "logit[1] - logit[0], dpda's", "logit1": "logit[1], the published one; OC-softmax's cosine",
                                 "softmax1": "softmax(logits)[1], AM-softmax's"}
LossName = Literal["ce", "ocsoftmax", "amsoftmax"]
# The score each loss's paper uses: `eval.score`'s default (dpda.train.losses has the losses).
LOSS_SCORE: dict[str, ScoreKind] = {"ce": DEFAULT_SCORE, "ocsoftmax": "logit1", "amsoftmax": "softmax1"}


class DataConfig(Settings):
    """Corpora as `KIND:PATH[:SUBSET]` specs (see `dpda.data.readers.load_corpus`)."""

    train: list[str] = Field(default_factory=list)
    dev: list[str] = Field(default_factory=list)
    eval: dict[str, list[str]] = Field(default_factory=dict)
    length: Annotated[int, Field(gt=0, le=MAX_INPUT_SAMPLES)] = 66_800
    # Where a training crop starts: `random` (dpda: a fresh offset per epoch, more of each file is
    # seen) or `first` (published: the first `length` samples). Utterances shorter than `length`
    # are tiled either way (published `utils.pad`); dev and eval always take the first samples.
    crop: Literal["random", "first"] = "random"
    # True (published): RawBoost on the whole utterance in the loader, then both paths cropped at
    # the same offset; a short utterance's noise is tiled with it. False (dpda): crop, then RawBoost
    # the batch on the device.
    augment_before_crop: bool = False
    num_workers: Annotated[int, Field(ge=0)] = 2
    check: Literal["fail", "skip"] = "fail"
    # Spoofing attacks (the manifest's `attack` names, e.g. A04) dropped from train and dev: a
    # leave-attacks-out protocol. Dev EER, early stopping and model selection then see only the
    # kept attacks; `dpda eval` on the full dev set scores the held-out ones as unseen attacks.
    held_out_attacks: list[str] = Field(default_factory=list)


Probability = Annotated[float, Field(ge=0, le=1)]


class FrontendDropout(Settings):
    """Explicit dropout settings of an SSL front end: torchaudio wav2vec2_model's arguments (the
    fairseq and Hugging Face names of each: `dpda.models.ssl_weights.DROPOUT_KEYS`)."""

    encoder_projection_dropout: Probability = 0.0
    encoder_attention_dropout: Probability = 0.0
    encoder_ff_interm_dropout: Probability = 0.0
    encoder_dropout: Probability = 0.0
    encoder_layer_drop: Probability = 0.0


class ModelConfig(Settings):
    name: str = "aasist"
    preset: str = "full"
    overrides: dict[str, Any] = Field(default_factory=dict)
    ssl_checkpoint: str | None = None
    freeze_frontend: bool = False
    # An SSL front end's dropout / attention dropout / activation dropout / layer drop while it
    # trains: `off` (dpda: all 0.0), `checkpoint` (published: the values `ssl_checkpoint` was
    # trained with, read from its config), or explicit values (FrontendDropout).
    frontend_dropout: Literal["off", "checkpoint"] | FrontendDropout = "off"
    # Start from these weights (dpda.train.init_from): a dpda model.pt / checkpoint or a released
    # .pth (`published`, `aasist`); `auto` tells them apart by the file's contents.
    init_from: str | None = None
    init_format: Literal["auto", "dpda", "published", "aasist"] = "auto"

    @model_validator(mode="after")
    def _known_model(self) -> ModelConfig:
        """A model, preset or override typo fails at load, before any corpus is read or a search
        starts (the UserError names `model.name`, `model.preset` or `model.overrides.KEY`)."""
        from dpda.models.registry import resolve_config

        config = resolve_config(self.name, self.preset, self.overrides, where="model")
        if self.frontend_dropout != "off":
            if "ssl_dropout" not in config:
                raise UserError(f"model.frontend_dropout: {self.name} has no SSL front end (use off)")
            if "ssl_dropout" in self.overrides:
                raise UserError("model.frontend_dropout: set either it or model.overrides.ssl_dropout, not both")
            if self.frontend_dropout == "checkpoint" and not self.ssl_checkpoint:
                raise UserError("model.frontend_dropout: checkpoint reads model.ssl_checkpoint's config, which is not set")
        return self

    def build_overrides(self) -> dict[str, Any]:
        """`overrides` with the front end's dropout settings (`ssl_dropout`) of `frontend_dropout`;
        `checkpoint` reads them from the checkpoint's config (a UserError naming it if absent)."""
        if self.frontend_dropout == "off":
            return dict(self.overrides)
        if self.frontend_dropout == "checkpoint":
            from dpda.models.ssl_weights import checkpoint_dropout

            return {**self.overrides, "ssl_dropout": checkpoint_dropout(self.ssl_checkpoint)}
        return {**self.overrides, "ssl_dropout": self.frontend_dropout.model_dump()}


class AugmentConfig(Settings):
    """`none`: originals only; `augmented`: augmented copies only (single path); `dual`: both paths
    (the published DPDA baseline is `dual` with rule `none` and a joint forward).
    What the augmented path is: `pipeline`, transforms composed by `chain` / `one_of`
    (`dpda.augment.spec`, docs/augmentation.md), or, without it, `rawboost` alone: the RawBoost
    parameters (published names), i.e. a one-transform pipeline. Giving both is an error. Both are
    validated once here; dumps hold the keys given, as written (and no `pipeline` key without one,
    so configs from before pipelines dump unchanged).
    Several augmented paths: `paths`, name -> `{rawboost: ...}` or `{pipeline: ...}`
    (`dpda.augment.paths`), each its own gradient in the step (mode `dual` only, instead of
    `rawboost` / `pipeline`); without it the one augmented path is named `aug`."""

    model_config = ConfigDict(**Settings.model_config, arbitrary_types_allowed=True)

    mode: Literal["none", "augmented", "dual"] = "dual"
    rawboost: RawBoostParams = Field(default_factory=RawBoostParams.default)
    pipeline: Compose | None = None
    paths: dict[str, AugmentPath] | None = None

    @field_validator("mode", mode="before")
    @classmethod
    def _renamed_mode(cls, mode: Any) -> Any:
        """`da` was this mode's old name ("DA" now names only the published baseline)."""
        if mode == "da":
            print("augment.mode: 'da' is deprecated, use 'augmented'", file=sys.stderr)
            return "augmented"
        return mode

    @field_validator("pipeline", mode="before")
    @classmethod
    def _parse_pipeline(cls, raw: Any) -> Any:
        """The YAML tree -> `Compose` (a UserError naming `augment.pipeline....` on any problem)."""
        if raw is None or isinstance(raw, Compose):
            return raw
        return parse_pipeline(raw, "augment.pipeline")

    @field_validator("paths", mode="before")
    @classmethod
    def _parse_paths(cls, raw: Any) -> Any:
        """The YAML mapping -> typed paths (a UserError naming `augment.paths.NAME....`)."""
        return None if raw is None else parse_paths(raw, "augment.paths")

    @model_validator(mode="after")
    def _one_source(self) -> AugmentConfig:
        if self.pipeline is not None and "rawboost" in self.model_fields_set:
            raise relation_error("rawboost", "give augment.rawboost or augment.pipeline, not both "
                                 "(RawBoost in a pipeline is a step: - rawboost: {algo: 4})")
        if self.paths is not None:
            if self.pipeline is not None or "rawboost" in self.model_fields_set:
                raise relation_error("paths", "give augment.paths or augment.rawboost / augment.pipeline, not both "
                                     "(each path has its own rawboost or pipeline)")
            if self.mode != "dual":
                raise relation_error("paths", f"several augmented paths need augment.mode dual, not {self.mode}")
        return self

    @property
    def path_transforms(self) -> dict[str, Compose]:
        """The augmented paths by name, in gradient order (path 1 first): `paths`, else the one
        path `aug` (`transforms`)."""
        if self.paths is None:
            return {SINGLE_PATH: self.transforms}
        return {name: path.transforms for name, path in self.paths.items()}

    @property
    def transforms(self) -> Compose:
        """The augmented path as a pipeline tree: `pipeline`, else one RawBoost step with p = 1."""
        return self.pipeline if self.pipeline is not None else single_step("rawboost", self.rawboost, "augment.rawboost")

    @property
    def rawboost_algo(self) -> int | None:
        """Telemetry's `rawboost_algo`: 0 without augmentation, None for a pipeline or several paths."""
        if self.mode == "none":
            return 0
        return self.rawboost.algo if self.pipeline is None and self.paths is None else None

    @field_serializer("rawboost")
    def _given_rawboost(self, params: RawBoostParams) -> dict[str, Any]:
        return params.model_dump(exclude_unset=True)

    @field_serializer("pipeline")
    def _given_pipeline(self, root: Compose | None) -> dict[str, Any] | None:
        return None if root is None else root.dump_body()

    @model_serializer(mode="wrap")
    def _given_keys(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data = handler(self)
        if self.pipeline is None:
            data.pop("pipeline", None)
        elif "rawboost" not in self.model_fields_set:
            data.pop("rawboost", None)
        if self.paths is None:
            data.pop("paths", None)
        elif "rawboost" not in self.model_fields_set:
            data.pop("rawboost", None)
        return data


class AlignConfig(AlignerSpec):
    """The aligner (rule from `dpda.align.registry`, strength, granularity, the rule's options)
    and how the two paths run: `separate` passes, `joint` (one forward over both, published), or
    `batched` (both paths as one vmapped pass with separate mode's numbers: dpda.train.batched_pass)."""

    mode: Literal["separate", "joint", "batched"] = "separate"


class OptimConfig(Settings):
    lr: Annotated[float, Field(gt=0)] = 1e-6
    weight_decay: Annotated[float, Field(ge=0)] = 1e-4
    batch_size: Positive = 5
    epochs: Positive = 100
    # `dpda`: at most `epochs` epochs; `published`: one more, as the published main.py (its loop
    # increments the 0-based epoch and breaks only once it exceeds the cap: 101 epochs for 100).
    epoch_cap: Literal["dpda", "published"] = "dpda"
    patience: Positive = 7
    # `trainable` (dpda): Adam gets the trainable parameters. `published`: every parameter and the
    # models' frozen tables, and with an alignment rule a zero .grad in the frozen ones, so weight
    # decay moves them as in the published GA runs (`dpda.train.optim_params`).
    params: OptimParams = "trainable"
    clip_norm: Annotated[float, Field(gt=0)] | None = None
    amp: bool = False
    max_steps_per_epoch: Positive | None = None

    @property
    def max_epochs(self) -> int:
        """How many epochs the loop may run (`epochs`, read through `epoch_cap`)."""
        return self.epochs + (self.epoch_cap == "published")


# Each loss's own options under `loss.` (LossConfig refuses another loss's option set off its default).
LOSS_OPTIONS: dict[str, tuple[str, ...]] = {"ce": ("class_weights",), "ocsoftmax": ("m_real", "m_fake", "alpha"),
                                            "amsoftmax": ("s", "m")}


class LossConfig(Settings):
    """The training loss (`dpda.train.losses`) and its options; an option of another loss may
    only keep its default (a dumped config holds them all, so another `loss.name` still loads)."""

    name: LossName = "ce"
    # ce: index 0 spoof, index 1 bona fide (published weighting)
    class_weights: Annotated[list[Annotated[float, Field(ge=0)]], Field(min_length=2, max_length=2)] = [0.1, 0.9]
    # ocsoftmax (Zhang et al. 2021; AIR-ASVspoof's r_real, r_fake, alpha): margins on the cosine to the center
    m_real: Annotated[float, Field(gt=-1, le=1)] = 0.9
    m_fake: Annotated[float, Field(ge=-1, lt=1)] = 0.2
    alpha: Annotated[float, Field(gt=0)] = 20.0
    # amsoftmax (AIR-ASVspoof's defaults: s = alpha = 20, m = r_real = 0.9): scale and additive margin
    s: Annotated[float, Field(gt=0)] = 20.0
    m: Annotated[float, Field(ge=0)] = 0.9

    @model_validator(mode="after")
    def _options_of_this_loss(self) -> LossConfig:
        for owner, keys in LOSS_OPTIONS.items():
            for key in keys:
                if owner != self.name and getattr(self, key) != LossConfig.model_fields[key].default:
                    raise relation_error(key, f"an option of loss.name: {owner}, not {self.name}")
        if self.name == "ocsoftmax" and self.m_fake >= self.m_real:
            raise relation_error("m_fake", f"{self.m_fake} must be < m_real = {self.m_real}")
        return self

    @field_validator("class_weights")
    @classmethod
    def _some_weight(cls, weights: list[float]) -> list[float]:
        if sum(weights) <= 0:
            raise ValueError("must be two non-negative weights [spoof, bonafide], not both 0")
        return weights


class CheckpointConfig(Settings):
    average_best: Annotated[int, Field(ge=1)] = 5
    # How the n best epochs are averaged (`dpda.train.checkpoint.average_counts`): `mean`, or
    # `published`, the published main.py's result (2 w1 + w2 + ... + w_{n-1}) / n (0-based ranks:
    # its state_dict aliasing drops the best epoch and counts the second best twice).
    average_formula: AverageFormula = "mean"
    select_by: Literal["dev_loss", "dev_eer"] = "dev_loss"


class TelemetryConfig(Settings):
    enabled: bool = True
    flush_every: Annotated[int, Field(ge=1)] = 200


class EvalConfig(Settings):
    """How a model's logits become the score written to score files and used for dev EERs
    (ScoreKind: `logit_diff` dpda's, `logit1` the published one), and how much of each file is
    scored: `length` samples from its start (tiled if shorter); None = `data.length`, the training
    crop (published). A model that pools over time can train on short crops for speed and still
    judge longer windows (measured for the demo in docs/scoring.md). `score` None: the loss's
    (`LOSS_SCORE`, read through `TrainConfig.score_kind`)."""

    score: ScoreKind | None = None
    # The dev loss early stopping and `checkpoint.select_by: dev_loss` rank epochs by
    # (`dpda.train.dev_loss`): `pooled` (dpda) the class-weighted mean over the set, `published`
    # the published main.py's mean of per-batch (8, protocol order) weighted means.
    dev_loss: DevLoss = "pooled"
    length: Annotated[int, Field(gt=0, le=MAX_INPUT_SAMPLES)] | None = None


class TrainConfig(Settings):
    seed: int = 1234
    device: str = "auto"

    @field_validator("device")
    @classmethod
    def _a_device(cls, name: str) -> str:
        """A device torch knows (whether this machine has it is checked where the run starts)."""
        import torch

        if name != "auto":
            try:
                torch.device(name)
            except (RuntimeError, TypeError):
                raise ValueError("must be auto or a torch device (cpu, cuda, cuda:N, mps)") from None
        return name
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    align: AlignConfig = Field(default_factory=AlignConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    telemetry: TelemetryConfig = Field(default_factory=TelemetryConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)

    @model_validator(mode="after")
    def _dev_for_dual(self) -> TrainConfig:
        if self.augment.mode == "dual" and self.data.train and not self.data.dev:
            raise UserError("data.dev: a dev set is needed for early stopping and model selection")
        return self

    @model_validator(mode="after")
    def _loader_transforms(self) -> TrainConfig:
        """Transforms on CPU arrays run in the DataLoader: only where the loader augments."""
        if self.augment.mode == "none" or self.data.augment_before_crop:
            return self
        on_cpu = [leaf for root in self.augment.path_transforms.values() for leaf in loader_leaves(root)]
        if on_cpu:
            raise UserError(f"{on_cpu[0].where}: runs on CPU arrays in the DataLoader workers: "
                            "set data.augment_before_crop: true (or use a device transform)")
        return self

    @property
    def score_kind(self) -> ScoreKind:
        """The score written and used for dev EERs: `eval.score`, else the loss's paper's."""
        return self.eval.score or LOSS_SCORE[self.loss.name]

    @property
    def scoring_length(self) -> int:
        """Samples scored per file for dev, eval and predict (`eval.length`, else `data.length`)."""
        return self.eval.length or self.data.length

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()


def config_from_dict(raw: dict[str, Any], source: str = "<dict>") -> TrainConfig:
    """Validate a nested dict; every error message starts with `source` and the key path."""
    try:
        return parse(TrainConfig, raw)
    except UserError as exc:
        raise UserError(f"{source}: {exc}") from None


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read a YAML config with safe loading, apply dotted overrides, validate."""
    path = Path(path)
    raw = read_yaml(path, "config file")
    if raw is None:
        raise UserError(f"{path}: the config file is empty (see configs/demo.yaml for one that works)")
    if not isinstance(raw, dict):
        raise UserError(f"{path}: the config must be a mapping")
    for key, value in (overrides or {}).items():
        set_dotted(raw, key, value)
    return config_from_dict(raw, source=str(path))
