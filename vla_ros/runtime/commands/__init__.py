"""The runtime's `vla-ros` subcommands (see `vla_ros/cli.py`): argument parsing and reports only.

    bench_command.py   `vla-ros bench TARGET`
    export_command.py  `vla-ros export`
    parity_command.py  `vla-ros parity`
    command_options.py options `bench runtime` and `parity` share

Heavy imports (torch, transformers) stay inside each `run`, so `vla-ros --help` stays fast.
"""
