"""RawBoost data augmentation on batched tensors, on the input's device.

`RawBoost` draws per-utterance randomness from an explicit torch.Generator and applies the
deterministic operations in `dpda.augment.functional`.
"""

from dpda.augment import functional
from dpda.augment.draws import ISDDraws, LnLDraws, NotchDraws, SSIDraws
from dpda.augment.params import ALGORITHMS, RawBoostParams
from dpda.augment.rawboost import RawBoost

__all__ = ["ALGORITHMS", "ISDDraws", "LnLDraws", "NotchDraws", "RawBoost", "RawBoostParams", "SSIDraws", "functional"]
