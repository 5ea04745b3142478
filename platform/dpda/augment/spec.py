"""The `augment.pipeline` config tree: transforms composed by `chain` and `one_of`, parsed once.

YAML form (the root is a chain's body):

    pipeline:
      steps:
        - gain: {p: 0.5, db: [-6, 6]}
        - one_of:
            p: 0.8
            weights: [2, 1]          # optional; uniform without
            steps:
              - codec: {kind: alaw}
              - chain: {steps: [{speed: {factors: [0.9, 1.1]}}, {band_drop: {}}]}

Each step is a one-key mapping: a transform name from `dpda.augment.registry` (its body: `p` and
the transform's parameters) or a composer (`chain`, `one_of`: `p`, `steps`, one_of's `weights`).
Any step may carry a `name:` (leaf or composer, unique in the pipeline): `dpda.dotted` then
addresses its body as `augment.pipeline.NAME.KEY` (search spaces, `--set`), whatever its position.
Every error is one UserError line naming the dotted key
(`augment.pipeline.steps[1].one_of.steps[0].codec.kind: ...`). A dump (`dump()`) holds the keys
as given, so it parses back to an equal tree.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union

from pydantic import AfterValidator, Field, model_validator

from dpda.augment.registry import COMPOSERS, TRANSFORMS, get_transform
from dpda.errors import UserError
from dpda.typed import Settings, parse, relation_error

Probability = Annotated[float, Field(ge=0, le=1)]
MAX_LEAVES = 63  # the applied-transforms mask is one int64 per utterance
RESERVED_NAMES = ("p", "steps", "weights", "name")  # a composer body's keys: a step name would shadow them
StepName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


def _not_reserved(name: str | None) -> str | None:
    if name in RESERVED_NAMES:
        raise ValueError(f"{name!r} is a pipeline key; choose another step name")
    return name


class Gate(Settings):
    """A leaf's own keys beside its transform's parameters."""

    p: Probability = 1.0
    name: Annotated[StepName | None, AfterValidator(_not_reserved)] = None


class ChainBody(Settings):
    p: Probability = 1.0
    name: Annotated[StepName | None, AfterValidator(_not_reserved)] = None
    steps: Annotated[list[Any], Field(min_length=1)]


class OneOfBody(ChainBody):
    weights: list[Annotated[float, Field(ge=0)]] | None = None

    @model_validator(mode="after")
    def _weights(self) -> OneOfBody:
        if self.weights is not None:
            if len(self.weights) != len(self.steps):
                raise relation_error("weights", f"{len(self.weights)} weights for {len(self.steps)} steps")
            if sum(self.weights) <= 0:
                raise relation_error("weights", "must not all be 0")
        return self


@dataclass(frozen=True)
class Leaf:
    """One transform with its parameters; `where` is its dotted config key (for messages)."""

    name: str
    params: Settings
    p: float
    p_given: bool
    where: str
    label: str | None = None  # the step's `name:`, if given

    def dump(self) -> dict[str, Any]:
        body = {"name": self.label} if self.label is not None else {}
        if self.p_given:
            body["p"] = self.p
        return {self.name: {**body, **self.params.model_dump(exclude_unset=True)}}


@dataclass(frozen=True)
class Compose:
    """`chain` (every step in order) or `one_of` (one step per utterance, by `weights`)."""

    kind: Literal["chain", "one_of"]
    body: ChainBody
    steps: tuple[Node, ...]
    where: str

    @property
    def p(self) -> float:
        return self.body.p

    @property
    def weights(self) -> list[float]:
        given = getattr(self.body, "weights", None)
        return given if given is not None else [1.0] * len(self.steps)

    def dump_body(self) -> dict[str, Any]:
        return {**self.body.model_dump(exclude_unset=True), "steps": [s.dump() for s in self.steps]}

    def dump(self) -> dict[str, Any]:
        return {self.kind: self.dump_body()}

    def leaves(self) -> Iterator[Leaf]:
        """Every leaf in pre-order (the order of draws and of the applied-transforms mask bits)."""
        for step in self.steps:
            if isinstance(step, Leaf):
                yield step
            else:
                yield from step.leaves()


Node = Union[Leaf, Compose]


def single_step(name: str, params: Settings, where: str) -> Compose:
    """A root chain of one transform with p = 1 (what `augment.rawboost` alone means)."""
    leaf = Leaf(name, params, 1.0, False, where)
    return Compose("chain", ChainBody.model_construct(p=1.0, steps=[leaf.dump()]), (leaf,), where)


def parse_pipeline(raw: Any, where: str = "augment.pipeline") -> Compose:
    """The root chain from its YAML body; one UserError line naming the key on any problem."""
    root = _compose("chain", raw, where)
    seen: dict[str, str] = {}
    for name, here in _labels(root):
        if name in seen:
            raise UserError(f"{here}.name: {name!r} already names {seen[name]} (step names are unique)")
        seen[name] = here
    count = sum(1 for _ in root.leaves())
    if count > MAX_LEAVES:
        raise UserError(f"{where}: {count} transforms; at most {MAX_LEAVES} fit the applied-transforms mask")
    return root


def _labels(node: Node) -> Iterator[tuple[str, str]]:
    """(name, dotted key) of every named step under `node`, in pre-order."""
    if isinstance(node, Leaf):
        if node.label is not None:
            yield node.label, node.where
        return
    for step in node.steps:
        if isinstance(step, Compose) and step.body.name is not None:
            yield step.body.name, step.where
        yield from _labels(step)


def _compose(kind: Literal["chain", "one_of"], raw: Any, where: str) -> Compose:
    body = parse(OneOfBody if kind == "one_of" else ChainBody, raw, where)
    steps = tuple(_node(step, f"{where}.steps[{i}]") for i, step in enumerate(body.steps))
    return Compose(kind, body, steps, where)


def _node(raw: Any, where: str) -> Node:
    if not isinstance(raw, Mapping) or len(raw) != 1:
        raise UserError(f"{where}: must be a mapping with one key, a transform ({', '.join(TRANSFORMS)}) "
                        f"or {', '.join(COMPOSERS)}")
    (name, body), = raw.items()
    here = f"{where}.{name}"
    if name in COMPOSERS:
        return _compose(name, body, here)
    transform = get_transform(str(name), where)
    body = {} if body is None else body
    if not isinstance(body, Mapping):
        raise UserError(f"{here}: must be a mapping, got {type(body).__name__}")
    own = set(Gate.model_fields)
    gate = parse(Gate, {k: v for k, v in body.items() if k in own}, here)
    params = transform.parse_params({k: v for k, v in body.items() if k not in own}, here)
    return Leaf(str(name), params, gate.p, "p" in body, here, gate.name)
