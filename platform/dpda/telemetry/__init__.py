"""Per-step gradient telemetry -> Parquet (schema: `dpda_analysis.schema`)."""

from dpda.telemetry.writer import (
    NullTelemetryWriter,
    TelemetryError,
    TelemetryWriter,
    make_writer,
    next_attempt,
    telemetry_root,
)

__all__ = [
    "NullTelemetryWriter",
    "TelemetryError",
    "TelemetryWriter",
    "make_writer",
    "next_attempt",
    "telemetry_root",
]
