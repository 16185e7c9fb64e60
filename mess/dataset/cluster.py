"""Running the generator's shards on Ray (``mess generate --ray``).

Ray (https://docs.ray.io) is the scale-out layer because it runs the same program on a
laptop (a local Ray started by this process) and on a cluster (``--ray-address``), and
its actors keep state between tasks: each :class:`ShardWorker` actor owns one
:class:`mess.Engine`, so the programs it compiled for one shard serve its next shards.

The division of labour keeps the output directory single-writer and the numbers
independent of the scheduling: the driver process embeds the conformers, plans every
shard's padding buckets in shard order (:func:`mess.dataset.generate.shard_signatures`,
the same history a sequential run has), hands the shard to a free actor, and writes
each finished shard atomically. A worker never touches the output directory, so the
cluster needs no shared file system, and a lost worker loses only its shard in flight
(re-running the command resumes it).
"""

from __future__ import annotations

import os

from mess.errors import InputError


def check_options(workers: int | None, gpus_per_worker: float) -> None:
    """Raise ``ValueError`` (one line) for Ray options that cannot work, or no Ray."""
    if workers is not None and workers < 1:
        raise InputError(f"--ray-workers must be at least 1, got {workers}")
    if gpus_per_worker < 0:
        raise InputError(f"--ray-gpus-per-worker must be >= 0, got {gpus_per_worker}")
    try:
        import ray  # noqa: F401
    except ImportError:
        raise InputError("--ray needs Ray: pip install 'mess[ray]'") from None


class ShardWorker:
    """A Ray actor's state: JAX in float64, the persistent compilation cache (when the
    driver uses one) and an engine kept across shards."""

    def __init__(self, cache_dir: str | None = None):
        import jax

        jax.config.update("jax_enable_x64", True)
        if cache_dir:
            from mess.config import enable_compilation_cache

            enable_compilation_cache(cache_dir)
        import mess

        self.engine = mess.Engine()

    def run(self, k, settings, entries, embedded, known, batch_size, validate_fraction):
        from mess.dataset.generate import _run_shard

        return k, _run_shard(settings, entries, embedded, self.engine, batch_size, known, validate_fraction, k)


class RayRunner:
    """Shards in flight on Ray actors, one per actor at a time.

    Args:
        address: a running cluster's address (``ray start --head`` prints it; ``auto``
            for the one on this node); ``None`` starts a local Ray with ``workers`` CPUs,
            unless this process already initialised Ray.
        workers: number of actors (default: the cluster's CPUs, or its GPUs when
            ``gpus_per_worker`` > 0).
        gpus_per_worker: GPUs reserved per actor (0: CPU actors).
    """

    def __init__(self, address: str | None = None, workers: int | None = None, gpus_per_worker: float = 0.0):
        check_options(workers, gpus_per_worker)
        import ray

        self.ray = ray
        self.started = False
        if not ray.is_initialized():
            kwargs = {"include_dashboard": False, "log_to_driver": False}
            if address is None:
                kwargs["num_cpus"] = workers or os.cpu_count() or 1
            try:
                ray.init(address=address, **kwargs)
            except ConnectionError as exc:
                raise InputError(f"cannot reach the Ray cluster at {address!r}: {exc}") from None
            self.started = True
        resources = ray.cluster_resources()
        if workers is None:
            kind = "GPU" if gpus_per_worker > 0 else "CPU"
            per = gpus_per_worker if gpus_per_worker > 0 else 1
            workers = max(1, int(resources.get(kind, 1) // per))
        import jax

        cache_dir = jax.config.jax_compilation_cache_dir or None  # the driver's, if it uses one
        actor = ray.remote(num_cpus=1, num_gpus=gpus_per_worker)(ShardWorker)
        self.idle = [actor.remote(cache_dir) for _ in range(workers)]
        self.inflight: dict = {}  # object ref -> actor

    @property
    def workers(self) -> int:
        return len(self.idle) + len(self.inflight)

    def full(self) -> bool:
        return not self.idle

    def busy(self) -> bool:
        return bool(self.inflight)

    def submit(self, k, settings, entries, embedded, known, batch_size, validate_fraction) -> None:
        actor = self.idle.pop()
        ref = actor.run.remote(k, settings, entries, embedded, known, batch_size, validate_fraction)
        self.inflight[ref] = actor

    def next_done(self):
        """``(k, shard result)`` of the next shard to finish (blocks). A failed task
        raises ``RuntimeError`` naming the shard's error; finished shards are kept."""
        ready, _ = self.ray.wait(list(self.inflight), num_returns=1)
        ref = ready[0]
        actor = self.inflight.pop(ref)
        try:
            k, result = self.ray.get(ref)
        except self.ray.exceptions.RayError as exc:
            first = str(exc).strip().splitlines()
            raise RuntimeError(f"a Ray worker failed: {first[-1] if first else type(exc).__name__}") from None
        self.idle.append(actor)
        return k, result

    def close(self) -> None:
        for actor in self.inflight.values():  # interrupted: stop the shards in flight
            self.ray.kill(actor)
        self.inflight.clear()
        if self.started:
            self.ray.shutdown()
