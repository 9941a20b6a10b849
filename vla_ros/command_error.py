"""The one error type a `vla-ros` subcommand raises for the user (a layer below every command
module, so they import it without importing `vla_ros.cli`, which imports them)."""
from __future__ import annotations


class CommandError(Exception):
    """A user-facing error: printed as `vla-ros <cmd>: error: ...`, exit status 2."""
