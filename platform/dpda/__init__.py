"""dpda: dual-path data augmentation with gradient alignment for speech deepfake detection."""

__version__ = "0.1.0"

# Label convention used everywhere (models, losses, scores): class 1 is bona fide, class 0 is
# spoof, and a score is the bona fide logit margin, so higher means more bona fide (ASVspoof).
SPOOF = 0
BONAFIDE = 1
SAMPLE_RATE = 16_000
