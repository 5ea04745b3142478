"""Errors a user of the analysis package can cause (wrong path, unreadable or foreign files)."""


class AnalysisError(ValueError):
    """A problem with the telemetry the user pointed at; the message names the path."""
