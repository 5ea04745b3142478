"""Starting Ray for a search, and Tune's verbosity for dpda's -q / default / -v.

Why here: `dpda tune` and `dpda quickstart` both start a search; one public helper keeps the
way Ray is started (address, logging, dashboard line) the same for both.
"""

from __future__ import annotations

import os


def tune_verbosity() -> int:
    """Tune's `verbose` for dpda's -q / default / -v: nothing, the status table, every trial event."""
    from dpda.console import QUIET, VERBOSE, verbosity

    return {QUIET: 0, VERBOSE: 2}.get(verbosity(), 1)


def init_ray(address: str | None = None) -> None:
    """Connect to Ray (`address`, else RAY_ADDRESS, a running local cluster, or a new one) unless
    this process already did; say where its dashboard is."""
    import logging

    import ray

    from dpda.console import QUIET, info, verbosity

    if ray.is_initialized():
        return
    quiet = verbosity() == QUIET
    # under --quiet the workers' output stays in their log files (Tune still names failed trials)
    context = ray.init(address=address or os.environ.get("RAY_ADDRESS"), log_to_driver=not quiet,
                       logging_level=logging.WARNING if quiet else logging.INFO)
    url = getattr(context, "dashboard_url", None)
    if url:
        info(f"Ray dashboard: http://{url}")
    else:
        info("Ray dashboard: not available (install ray[default] for it)")
