"""The installed mess version (recorded in every JSON line, Parquet file and result)."""

from __future__ import annotations


def package_version() -> str:
    """The version of the installed ``mess`` distribution, ``"unknown"`` when mess runs
    from a source tree that was never installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mess")
    except PackageNotFoundError:
        return "unknown"
