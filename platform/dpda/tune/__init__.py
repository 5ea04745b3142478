"""Searches: Ray Tune + Optuna over a search-space YAML.

`search_space` (YAML format, no Ray import) and `tuner` (Tuner; each trial is a `dpda.train`
run, on Ray Train workers through `dpda.train.ray_train` when a trial has several workers).
Ray is imported only by the modules that need it, so reading a search space stays cheap.
"""
