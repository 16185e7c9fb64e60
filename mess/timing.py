"""Time spent compiling, measured from JAX's monitoring events.

:class:`CompileClock` sums the durations JAX reports for tracing to a jaxpr, lowering
to MLIR and XLA's backend compile while it is active, so a caller can report
compilation apart from the run (benchmarks, the dataset generator's summary).
"""

from __future__ import annotations


class CompileClock:
    """Context manager: ``seconds`` spent tracing, lowering and compiling inside it."""

    EVENTS = ("/jax/core/compile/backend_compile_duration", "/jax/core/compile/jaxpr_to_mlir_module_duration",
              "/jax/core/compile/jaxpr_trace_duration")

    def __init__(self):
        self.seconds = 0.0

    def __call__(self, event, duration, **_):
        if event in self.EVENTS:
            self.seconds += duration

    def __enter__(self):
        import jax.monitoring

        jax.monitoring.register_event_duration_secs_listener(self)
        return self

    def __exit__(self, *exc):
        import jax.monitoring

        jax.monitoring.unregister_event_duration_listener(self)
