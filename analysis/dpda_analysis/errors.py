"""Errors a user of the analysis package can cause (wrong path, unreadable or foreign files),
and the warning for telemetry that is left out."""


class AnalysisError(ValueError):
    """A problem with the telemetry the user pointed at; the message names the path."""


class AnalysisWarning(UserWarning):
    """Telemetry left out of an analysis (e.g. a part file cut short); the message names it."""


class MissingPartsWarning(AnalysisWarning):
    """Part files absent from a run by their numbers (`dpda_analysis.gaps`); names the run and parts."""


class LocationError(AnalysisError):
    """A location that cannot be resolved or reached (malformed URI, dead endpoint, bad
    credentials, a bucket that does not exist); the message names the URI and the cause."""
