"""Options the runtime commands (`vla-ros bench runtime`, `vla-ros parity`) share."""
from __future__ import annotations


def apply_threads_and_device(threads: int | None, device: str) -> None:
    """Apply `--threads` to torch (it must be >= 1) and check that a `--device cuda...` exists;
    CommandError otherwise."""
    import torch

    from vla_ros.command_error import CommandError

    if threads is not None:
        if threads < 1:
            raise CommandError("--threads must be >= 1")
        torch.set_num_threads(threads)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise CommandError(f"--device {device}: CUDA is not available on this machine")
