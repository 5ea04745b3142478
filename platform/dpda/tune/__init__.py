"""Scale-out: Ray Train (multi-worker runs of the dpda Trainer) and Ray Tune + Optuna searches.

`search_space` (YAML format, no Ray import), `distributed` (TorchTrainer), `tuner` (Tuner).
Ray is imported only by the modules that need it, so reading a search space stays cheap.
"""
