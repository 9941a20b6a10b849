"""Where the node finds `model.path`: as given (a preset such as `random:tiny`, an absolute
path, or a path relative to the working directory), else in the installed package's share
directory, where colcon installs the bundled models (share/vla_ros/models/...)."""
from __future__ import annotations

from pathlib import Path


def resolve_model_path(path: str, share_dir: str | Path | None) -> tuple[str, str]:
    """(path to load, where it came from: 'preset', 'as given' or 'package share')."""
    if ":" in path and not Path(path).exists():  # random:tiny and friends
        return path, "preset"
    given = Path(path).expanduser()
    if given.is_absolute() or given.exists() or share_dir is None:
        return str(given), "as given"
    installed = Path(share_dir) / given
    if installed.exists():
        return str(installed), "package share"
    return str(given), "as given"  # loading reports the missing directory with its name
