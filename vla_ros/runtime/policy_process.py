"""A Policy served from its own process, for long-running nodes.

In one Python process the policy's work holds the interpreter lock between (and during) torch
ops, and its OpenMP threads compete with the message callbacks for cores: on a small CPU the
control timer then fires late and a 2-thread policy runs 2-3x slower than alone. Served from a
child process, the policy never blocks the node's threads: the node sends the tick over a pipe
and gets the PolicyOutput (numpy arrays) back. Only frames the child does not hold yet cross the
pipe (`FrameDelta`): with 4 frames per camera, a tick sends the newest frame of each camera and
the stamps of the rest (at 320x576, 2.2 MB instead of 8.8 MB pickled per tick).

`PolicyProcess.act` has the Policy's signature and may be called from any thread (calls are
serialized). An exception inside the child comes back as a `PolicyProcessError` naming the
original type and message (the node counts it and goes on); a navigation instruction the prompt
refuses comes back as the `RouteRefusedError` it was, so the node can clear the route. If the
child dies, that call raises and the next call starts a fresh child (loading the model again); if
that fails too, calls fail fast until RESTART_BACKOFF_S has passed, then the next one tries
again. Once closed, nothing is restarted. The child ignores SIGINT and SIGTERM (a Ctrl-C or a
group kill reaches it too): the node decides when it stops, and it exits when the node closes it
or goes away.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import sys
import threading
import time
import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # numpy starts its BLAS threads on import: in the child, only after os.nice
    import numpy as np

_LOG = logging.getLogger("vla_ros.runtime")

RESTART_BACKOFF_S = 10.0  # after a failed restart, calls fail fast for this long


class PolicyProcessError(RuntimeError):
    """An inference in the policy process failed, or the process died."""


@dataclass(frozen=True)
class PolicySpec:
    """What the child needs to load the policy."""

    path: str
    device: str = "cpu"
    dtype: str | None = None
    backend: str = "torch"
    cpu_threads: int = 0  # torch intra-op threads in the child (0: all cores but one, at least 1)
    nice: int = 0  # niceness the child adds to itself, so the node's timers preempt it
    nav_guidance_weight: float | None = None  # navigation guidance (None: the checkpoint's setting)


FrameKey = tuple[str, int, int, int]  # camera, stamp ns, height, width (as the vision cache keys)


@dataclass
class FrameDelta:
    """A tick's inputs with only the frames the child does not hold: `inputs.images` is None and
    `new_frames` maps each new frame's key to its (H, W, 3) image. Frames of the previous tick
    are held by the child; the rest of the tick (history, stamps, names) travels whole."""

    inputs: Any  # PolicyInputs with images=None
    shape: tuple[int, ...]  # (V, F, H, W, 3)
    new_frames: dict[FrameKey, np.ndarray] = field(default_factory=dict)


def _frame_keys(inputs: Any, shape: tuple[int, ...]) -> list[FrameKey] | None:
    import numpy as np

    if inputs.camera_names is None or inputs.stamps_ns is None or len(shape) != 5:
        return None
    stamps = np.asarray(inputs.stamps_ns, dtype=np.int64)
    if stamps.shape != shape[:2] or len(inputs.camera_names) != shape[0]:
        return None  # the policy reports the mismatch
    return [(str(inputs.camera_names[v]), int(stamps[v, f]), shape[2], shape[3])
            for v in range(shape[0]) for f in range(shape[1])]


class FrameStore:
    """The child's side: the frames of the last tick, by key, to rebuild the next tick's images."""

    def __init__(self) -> None:
        self.frames: dict[FrameKey, np.ndarray] = {}

    def rebuild(self, delta: FrameDelta) -> Any:
        import numpy as np

        keys = _frame_keys(delta.inputs, delta.shape)
        assert keys is not None
        held = {**self.frames, **delta.new_frames}
        images = np.stack([held[k] for k in keys]).reshape(delta.shape)
        self.frames = {k: held[k] for k in keys}  # what the parent now believes the child holds
        return dataclasses.replace(delta.inputs, images=images)


def default_threads(requested: int) -> int:
    """Threads for a policy that shares the machine with its node: all cores but one."""
    return requested if requested > 0 else max(1, (os.cpu_count() or 1) - 1)


def _serve(conn: Any, spec: PolicySpec) -> None:
    """The child: load, report what the node needs, then answer act() requests until told to stop."""
    import signal

    for sig in (signal.SIGINT, signal.SIGTERM):  # they reach the whole group; the node decides when to stop
        signal.signal(sig, signal.SIG_IGN)
    try:
        if spec.nice > 0 and hasattr(os, "nice"):
            # Linux sets niceness per thread: before torch starts its OpenMP workers, which inherit it
            os.nice(spec.nice)
        import torch

        from vla_ros.runtime.inputs import RouteRefusedError
        from vla_ros.runtime.policy import Policy

        torch.set_num_threads(default_threads(spec.cpu_threads))
        policy = Policy.from_pretrained(spec.path, device=spec.device, dtype=spec.dtype, backend=spec.backend,
                                        nav_guidance_weight=spec.nav_guidance_weight)
        params = getattr(policy, "model", None)
        conn.send(("ready", {
            "image_size_hw": getattr(policy, "image_size_hw", None),
            "num_waypoints": getattr(policy, "num_waypoints", None),
            "robot_dims": getattr(policy, "robot_dims", None),
            "takes_navigation": bool(getattr(policy, "takes_navigation", False)),
            "needs_camera_ids": bool(getattr(policy, "needs_camera_ids", False)),
            "variable_cameras": bool(getattr(policy, "variable_cameras", False)),
            "config": getattr(policy, "config", None),
            "parameters": sum(p.numel() for p in params.parameters()) if params is not None else None,
            "threads": torch.get_num_threads(),
            "pid": os.getpid(),
            "nice": os.nice(0) if hasattr(os, "nice") else None,
        }))
    except Exception as exc:  # noqa: BLE001 - the parent reports why loading failed
        conn.send(("load_error", f"{type(exc).__name__}: {exc}"))
        return
    store = FrameStore()
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return  # the parent went away
        if request is None:
            return
        stack, kwargs = request
        try:
            if isinstance(stack, FrameDelta):
                stack = store.rebuild(stack)
            conn.send(("ok", policy.act(stack, **kwargs)))
        except RouteRefusedError as exc:  # its own kind: the node clears the route
            conn.send(("route_refused", str(exc)))
        except Exception as exc:  # noqa: BLE001 - one failed inference is reported, the next one runs
            conn.send(("error", f"{type(exc).__name__}: {exc}"))


def load_node_policy(config: Any) -> tuple[Any, int]:
    """The drive node's policy for a vla_ros Config: served from a child process
    (`inference.separate_process`, the default) or loaded into this one; and its torch threads."""
    inf = config.inference
    if inf.separate_process:
        sys.setswitchinterval(0.001)  # the node's own threads (callbacks, timers) take turns promptly
        served = PolicyProcess(PolicySpec(config.model.path, config.model.device, config.model.dtype, inf.backend, inf.cpu_threads,
                                          inf.policy_nice, config.navigation.policy_guidance_weight))
        return served, served.threads
    from vla_ros.runtime.policy import Policy
    from vla_ros.runtime.threads import configure_cpu_threads

    threads = configure_cpu_threads(inf.cpu_threads)
    return Policy.from_pretrained(config.model.path, device=config.model.device, dtype=config.model.dtype, backend=inf.backend,
                                  nav_guidance_weight=config.navigation.policy_guidance_weight), threads


class PolicyProcess:
    """A Policy in a child process (spawned: no inherited threads or CUDA state)."""

    def __init__(self, spec: PolicySpec, start_timeout_s: float = 600.0) -> None:
        self.spec = spec
        self.start_timeout_s = start_timeout_s
        self.restarts = 0
        self._ctx = multiprocessing.get_context("spawn")
        self._proc: Any = None
        self._conn: Any = None
        self._lock = threading.Lock()  # one request on the pipe at a time
        self._closed = False
        self._dead_reason: str | None = None  # set when the child died; the next call restarts it
        self._retry_after = 0.0  # monotonic time before which a failed restart is not retried
        self._held: set[FrameKey] = set()  # frames the child holds (its FrameStore's keys)
        self.frames_sent = 0  # frames pickled to the child
        self.frames_reused = 0  # frames the child already held
        self.info: dict[str, Any] = {}
        self._start()

    def _start(self) -> None:
        parent, child = self._ctx.Pipe()
        proc = self._ctx.Process(target=_serve, args=(child, self.spec), name="vla_ros-policy", daemon=True)
        proc.start()
        child.close()
        ok = False
        try:
            deadline = time.monotonic() + self.start_timeout_s
            while not parent.poll(0.2):
                if not proc.is_alive():
                    raise PolicyProcessError(f"policy process exited with code {proc.exitcode} while loading {self.spec.path}")
                if time.monotonic() > deadline:
                    raise PolicyProcessError(f"policy process did not load {self.spec.path} within {self.start_timeout_s:.0f} s")
            try:
                kind, payload = parent.recv()
            except EOFError as exc:
                raise PolicyProcessError(f"policy process exited while loading {self.spec.path}") from exc
            if kind != "ready":
                raise PolicyProcessError(f"cannot load model '{self.spec.path}': {payload}")
            ok = True
        finally:
            if not ok:
                parent.close()
                proc.join(2)
                if proc.is_alive():
                    proc.kill()
                    proc.join(2)
        self._proc, self._conn, self.info = proc, parent, payload
        self._held = set()  # a new child holds nothing

    # -- what the node reads of a Policy ----------------------------------------------------

    @property
    def image_size_hw(self) -> tuple[int, int] | None:
        return self.info.get("image_size_hw")

    @property
    def num_waypoints(self) -> int | None:
        return self.info.get("num_waypoints")

    @property
    def config(self) -> Any:
        return self.info.get("config")

    @property
    def robot_dims(self) -> tuple[int, int] | None:
        return self.info.get("robot_dims")

    @property
    def takes_navigation(self) -> bool:
        return bool(self.info.get("takes_navigation", False))

    @property
    def needs_camera_ids(self) -> bool:
        return bool(self.info.get("needs_camera_ids", False))

    @property
    def variable_cameras(self) -> bool:
        return bool(self.info.get("variable_cameras", False))

    @property
    def threads(self) -> int:
        return int(self.info.get("threads", 0))

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def _delta(self, stack: Any) -> tuple[Any, set[FrameKey] | None]:
        """The request for `stack`: a FrameDelta (and the keys the child will then hold) when the
        frames are named and stamped; the stack itself otherwise."""
        import numpy as np

        from vla_ros.runtime.inputs import PolicyInputs

        if isinstance(stack, PolicyInputs):
            inputs = stack
        elif hasattr(stack, "images") and hasattr(stack, "history"):  # a FrameStack
            inputs = PolicyInputs.from_stack(stack)
        else:
            return stack, None
        images = np.asarray(inputs.images) if not hasattr(inputs.images, "detach") else None
        if images is None or images.ndim != 5:
            return stack, None
        keys = _frame_keys(inputs, images.shape)
        if keys is None or len(set(keys)) != len(keys):
            return stack, None
        flat = images.reshape(-1, *images.shape[2:])
        new = {k: flat[i] for i, k in enumerate(keys) if k not in self._held}
        self.frames_sent += len(new)
        self.frames_reused += len(keys) - len(new)
        return FrameDelta(dataclasses.replace(inputs, images=None), images.shape, new), set(keys)

    def act(self, stack: Any, **kwargs: Any) -> Any:
        with self._lock:
            if self._closed:
                raise PolicyProcessError("policy process is closed")
            if self._conn is None:
                self._restart()
            request, keys = self._delta(stack)
            try:
                self._conn.send((request, kwargs))
                kind, payload = self._conn.recv()
                # The child now holds exactly this tick's frames; after an error, assume nothing.
                if kind in ("error", "route_refused"):
                    self._held = set()
                elif keys is not None:
                    self._held = keys
            except (EOFError, OSError) as exc:  # the child died (BrokenPipeError is an OSError)
                code = self._proc.exitcode if self._proc is not None else None
                self._discard()
                self._dead_reason = f"policy process died (exit code {code})"
                raise PolicyProcessError(f"{self._dead_reason} during an inference; a new one starts with the next") from exc
        if kind == "error":
            raise PolicyProcessError(payload)
        if kind == "route_refused":
            from vla_ros.runtime.inputs import RouteRefusedError  # the same type as in one process

            raise RouteRefusedError(payload)
        return payload

    def _restart(self) -> None:
        """Start a new child (under the lock), at most once per RESTART_BACKOFF_S after a failure."""
        if time.monotonic() < self._retry_after:
            raise PolicyProcessError(f"{self._dead_reason}; next restart attempt in {self._retry_after - time.monotonic():.0f} s")
        self.restarts += 1
        _LOG.error("%s: starting a new policy process (restart %d)", self._dead_reason or "no policy process", self.restarts)
        try:
            self._start()
        except PolicyProcessError as exc:
            self._retry_after = time.monotonic() + RESTART_BACKOFF_S
            self._dead_reason = f"restarting the policy process failed: {exc}"
            raise
        self._dead_reason = None

    def _discard(self) -> None:
        if self._proc is not None:
            self._proc.join(1)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join(2)
        if self._conn is not None:
            self._conn.close()
        self._proc = self._conn = None

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop the child. An inference in flight may finish first (up to `timeout_s`); a child
        that does not, is killed."""
        self._closed = True
        if not self._lock.acquire(timeout=timeout_s):
            proc = self._proc
            if proc is not None and proc.is_alive():
                proc.kill()  # the call waiting on it sees EOF and raises
            return
        try:
            if self._conn is not None:
                try:
                    self._conn.send(None)
                except OSError:
                    pass
                if self._proc is not None:
                    self._proc.join(5)
            self._discard()
        finally:
            self._lock.release()

    def __enter__(self) -> "PolicyProcess":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
