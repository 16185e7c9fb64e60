"""Energy-loss training speed: steps/s and molecules/s, and where a step's time goes.

For a training config (default: the demo preset), one round of the data stream is
prepared and then, every program compiled, this script times:

* the full training step (loss, gradient through the network and the DFT energy,
  AdamW update);
* the network alone: forward and backward of the model's output (``sum W**2``), no DFT;
* the DFT energy alone: forward and backward of the energy of the predicted density
  with respect to a fixed correction ``W`` (the part that scales with the basis);
* the data preparation of one round (RDKit conformers, planning, integrals, grid,
  MINAO density), per step it feeds (``steps_per_round``), which the training loop
  overlaps with the steps;

and reports the shares, with versions, as a table and as JSON in
``benchmarks/results``. Training has no PySCF counterpart to time against; the
cost of one SCF of the same molecules is printed for scale.

Usage:
    python benchmarks/train.py                    # demo preset, the CPU
    python benchmarks/train.py --model small --batch-size 64   # a GPU
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _time(fn, repeat: int) -> float:
    import jax

    jax.block_until_ready(fn())  # compile
    t = time.perf_counter()
    for _ in range(repeat):
        jax.block_until_ready(fn())
    return (time.perf_counter() - t) / repeat


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=["tiny", "small"], default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--cycles", type=int, default=None)
    p.add_argument("--repeat", type=int, default=10)
    p.add_argument("--no-scf-scale", dest="scf_scale", action="store_false",
                   help="skip timing a converged SCF of the same molecules for scale")
    p.add_argument("--out", default=str(HERE / "results"), help="directory for the JSON/text results")
    args = p.parse_args(argv)

    import equinox as eqx
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    import mess
    from mess.train import config as cfg
    from mess.train.batch import device_batch
    from mess.train.loop import Trainer
    from mess.train.model import physics_matrices
    from mess.train.objective import predicted_energy
    from mess.train.stream import Prefetcher, round_molecules

    from throughput import versions

    c = cfg.preset("demo")
    given = {"model": args.model, "batch_size": args.batch_size, "cycles": args.cycles}
    c = dataclasses.replace(c, **{k: v for k, v in given.items() if v is not None})
    engine = mess.Engine()
    stream = Prefetcher(c, engine, [])
    stream._pool.shutdown()
    jax.block_until_ready([device_batch(h, engine) for h in stream._prepare(0)])  # compiles
    t = time.perf_counter()
    hosts = stream._prepare(1)
    host_s = time.perf_counter() - t
    t = time.perf_counter()
    batches = jax.block_until_ready([device_batch(h, engine) for h in hosts])
    device_s = time.perf_counter() - t
    batch = batches[0]
    trainer = Trainer(c)
    n = int(batch.weight.sum())

    step_s = _time(lambda: trainer._step(trainer.model, trainer.opt_state, batch)[2], args.repeat)

    def net(model):
        return jnp.sum(jax.vmap(lambda pr, tok: model(tok, physics_matrices(pr)) ** 2)(batch.problems,
                                                                                       batch.tokens))

    net_fn = eqx.filter_jit(eqx.filter_grad(net))
    net_s = _time(lambda: net_fn(trainer.model), args.repeat)
    w = jnp.zeros(batch.problems.x.shape)

    def dft(w):
        return jnp.sum(jax.vmap(lambda pr, wi: predicted_energy(pr, wi, c.cycles, c.mixing))(batch.problems, w))

    dft_fn = jax.jit(jax.grad(dft))
    dft_s = _time(lambda: dft_fn(w), args.repeat)
    prep_per_step = (host_s + device_s) / c.steps_per_round
    result = {
        "config": c.to_dict(), "molecules_per_step": n, "signature_nao": batch.signature.nao,
        "step_s": step_s, "steps_per_s": 1 / step_s, "molecules_per_s": n / step_s,
        "network_s": net_s, "dft_energy_s": dft_s, "prep_round_host_s": host_s, "prep_round_device_s": device_s,
        "prep_per_step_s": prep_per_step, "share_network": net_s / step_s, "share_dft_energy": dft_s / step_s,
        "prep_over_step": prep_per_step / step_s, "versions": versions(),
    }
    lines = [
        f"training step ({c.model} model, {n} molecules, {batch.signature.nao} AOs padded, K = {c.cycles}): "
        f"{step_s * 1e3:.1f} ms = {1 / step_s:.2f} steps/s, {n / step_s:.1f} molecules/s",
        f"  network forward+backward     {net_s * 1e3:8.1f} ms  ({100 * net_s / step_s:.0f}% of a step)",
        f"  DFT energy forward+backward  {dft_s * 1e3:8.1f} ms  ({100 * dft_s / step_s:.0f}% of a step)",
        f"  data preparation per step    {prep_per_step * 1e3:8.1f} ms  (host {host_s:.2f} s + device "
        f"{device_s:.2f} s per round of {c.steps_per_round} steps; overlapped: host part in a thread)",
    ]
    Path(args.out).mkdir(parents=True, exist_ok=True)
    out = Path(args.out) / f"train-{result['versions']['device'].split(':')[0]}-{time.strftime('%Y%m%d-%H%M%S')}"

    def write() -> None:  # written before the SCF for scale, and again after it
        print("\n".join(lines), flush=True)
        out.with_suffix(".json").write_text(json.dumps(result, indent=1))
        out.with_suffix(".txt").write_text("\n".join(lines) + "\n")

    write()
    if args.scf_scale:
        t = time.perf_counter()
        engine.run_batch(round_molecules(c, 0)[:n], c.basis, c.xc, grid_level=c.grid_level)
        result["scf_batch_cold_s"] = time.perf_counter() - t
        t = time.perf_counter()
        engine.run_batch(round_molecules(c, 1)[:n], c.basis, c.xc, grid_level=c.grid_level)
        result["scf_batch_warm_s"] = scf_s = time.perf_counter() - t
        lines.append(f"for scale: a converged SCF of the same {n} molecules (run_batch, warm) {scf_s:.2f} s")
        write()
    return result


if __name__ == "__main__":
    main()
