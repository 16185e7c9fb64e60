"""The training loop: a run interrupted and resumed from its checkpoint equals an
uninterrupted one (same steps, optimiser state, data order), the files it writes, and
one-line errors for bad configs and commands."""

import json

import equinox as eqx
import jax
import numpy as np
import pytest

import mess
from mess.cli import main
from mess.train import config as cfg
from mess.train.loop import Trainer, checkpoints, train
from mess.train.stream import round_molecules

TINY = dict(smiles=("[H][H]", "O"), xc="hf", conformers_per_round=2, eval_conformers=1, steps=6,
            steps_per_round=2, batch_size=4, eval_every=6, checkpoint_every=4, cycles=0, warmup_steps=1,
            learning_rate=1e-2)


class Stop(Exception):
    pass


def _leaves(trainer_state):
    return [np.asarray(a) for a in jax.tree.leaves(eqx.filter(trainer_state, eqx.is_array))]


def test_resumed_run_equals_an_uninterrupted_one(tmp_path):
    c = cfg.TrainConfig(**TINY)
    engine = mess.Engine()
    whole = train(c, tmp_path / "whole", progress=False, engine=engine)

    def crash(step, loss):
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(c, tmp_path / "cut", progress=False, engine=engine, on_step=crash)
    assert [p.stem for p in checkpoints(tmp_path / "cut")] == ["step-000003"]  # written on the interrupt
    with pytest.raises(mess.InputError, match="already holds a run"):
        train(c, tmp_path / "cut", progress=False, engine=engine)
    resumed = train(c, tmp_path / "cut", resume=True, progress=False, engine=engine)

    def final(out):
        t = Trainer(c)
        t.load(checkpoints(out)[-1])
        return _leaves((t.model, t.opt_state))

    for a, b in zip(final(tmp_path / "whole"), final(tmp_path / "cut")):
        np.testing.assert_array_equal(a, b)
    loss = [(tmp_path / d / "loss.csv").read_text().splitlines() for d in ("whole", "cut")]
    assert [r.split(",")[:2] for r in loss[0]] == [r.split(",")[:2] for r in loss[1]]
    assert len(loss[0]) == 1 + c.steps
    rows = [json.loads(x) for x in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 6]
    assert resumed["energy_error_mha"] == pytest.approx(whole["energy_error_mha"], rel=1e-10)
    for key in ("energy_error_mha", "minao_energy_error_mha", "scf_iterations_model", "scf_iterations_minao",
                "homo_error_mha", "lumo_error_mha", "density_error"):
        assert np.isfinite(rows[-1][key])
    assert rows[-1]["reference_unconverged"] == 0 and rows[-1]["geometries"] == 2
    assert (tmp_path / "cut" / "learning_curve.png").stat().st_size > 1000
    # the data stream depends on the round only
    a, b = round_molecules(c, 1), round_molecules(c, 1)
    assert all(np.array_equal(x.positions, y.positions) for x, y in zip(a, b))
    assert not np.allclose(round_molecules(c, 0)[0].positions, a[0].positions)


def test_config_round_trips_through_toml(tmp_path):
    c = cfg.TrainConfig(**TINY)
    p = tmp_path / "c.toml"
    p.write_text(cfg.to_toml(c))
    assert cfg.load(p) == c


@pytest.mark.parametrize("text, message", [
    ("stepz = 3\n", "unknown option 'stepz'"),
    ("steps = 0\n", "steps must be a positive integer"),
    ("model = 'huge'\n", "unknown model 'huge'"),
    ("smiles = 'CCO'\n", "smiles must be a list"),
    ("scaling_fractions = [0.5, 2]\n", "scaling_fractions must be"),
    ("cycles = -1\n", "cycles must be a non-negative integer"),
    ("mixing = 1.5\n", "mixing must be in"),
    ("steps = [\n", "not valid TOML"),
])
def test_bad_config_is_one_line_exit_2(tmp_path, capsys, text, message):
    p = tmp_path / "bad.toml"
    p.write_text(text)
    assert main(["train", str(p), "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_bad_train_commands_are_one_line_exit_2(tmp_path, capsys):
    cases = [(["train", str(tmp_path / "missing.toml"), "--out", str(tmp_path / "o")], "no config file"),
             (["train", "--preset", "demo", "--steps", "0", "--out", str(tmp_path / "o")], "steps must be"),
             (["train", "--task", "supervised", "--out", str(tmp_path / "o")], "needs a dataset")]
    for argv, message in cases:
        assert main(argv + ["--no-progress"]) == 2, argv
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err


SHARDED = r"""
import os, sys
import jax, numpy as np, equinox as eqx
jax.config.update("jax_enable_x64", True)
import mess
from mess.train import AOTransformer, batch_loss, training_batches
from mess.train.loop import shard
assert jax.device_count() == 2, jax.devices()
mols = [mess.Molecule.from_smiles(s) for s in ("O", "[H][H]", "N", "[H]F")]
(batch,) = training_batches(mols, "sto-3g", "hf")
model = AOTransformer.tiny(jax.random.PRNGKey(0))
f = eqx.filter_jit(eqx.filter_value_and_grad(batch_loss))
l1, g1 = f(model, batch)
sb = shard(batch)
assert len(sb.weight.sharding.device_set) == 2
l2, g2 = f(model, sb)
np.testing.assert_allclose(float(l2), float(l1), rtol=1e-12)
for a, b in zip(jax.tree.leaves(eqx.filter(g1, eqx.is_array)), jax.tree.leaves(eqx.filter(g2, eqx.is_array))):
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-9, atol=1e-12)
print("ok")
"""


@pytest.mark.slow
def test_data_parallel_step_equals_single_device(tmp_path):
    import os
    import subprocess
    import sys

    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", SHARDED], env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-3000:]


def test_supervised_baseline_trains_on_a_generated_dataset(tmp_path, capsys):
    from mess.dataset import Settings, generate

    src = tmp_path / "mols.smi"
    src.write_text("O\nC\nN\nCO\nCC\nC=O\n")
    generate(Settings(source=str(src), xc="hf", conformers=3), tmp_path / "data", progress=False, workers=0)
    config = tmp_path / "sup.toml"
    config.write_text("task = 'supervised'\nsteps = 60\neval_every = 30\nbatch_size = 8\nwarmup_steps = 5\n"
                      "learning_rate = 3e-3\nscaling_fractions = [0.5, 1.0]\nvalidation_fraction = 0.25\n")
    out = tmp_path / "run"
    assert main(["train", str(config), "--data", str(tmp_path / "data"), "--out", str(out), "--no-progress"]) == 0
    assert "validation MAE of energy" in capsys.readouterr().out
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    final = [r for r in rows if r["step"] == 60]
    assert [r["train_rows"] for r in final] == sorted(r["train_rows"] for r in final) and len(final) == 2
    for r in final:
        assert np.isfinite(r["val_mae_mha"]) and r["val_rows"] >= 1
    assert (out / "mae_vs_rows.png").stat().st_size > 1000
    assert len(json.loads((out / "scaling.json").read_text())) == 2
    # a finished subset is kept on resume; a run is not overwritten without --resume
    argv = ["train", str(config), "--data", str(tmp_path / "data"), "--out", str(out), "--no-progress"]
    assert main(argv) == 2 and "already holds a run" in capsys.readouterr().err
    scaling = json.loads((out / "scaling.json").read_text())
    (out / "scaling.json").write_text(json.dumps(scaling[:1]))
    assert main(argv + ["--resume"]) == 0
    again = json.loads((out / "scaling.json").read_text())
    assert [r["val_mae_mha"] for r in again] == [r["val_mae_mha"] for r in scaling]  # same data order, same numbers
    assert len((out / "metrics.jsonl").read_text().splitlines()) == len(rows)


def test_reference_energies_fit_element_counts():
    from mess.train.supervised import reference_energies

    z = np.array([[8, 1, 1, 0], [6, 1, 1, 1], [1, 1, 0, 0], [8, 8, 0, 0]])
    e_true = np.zeros(87)
    e_true[[1, 6, 8]] = [-0.5, -37.8, -75.0]
    y = np.array([np.sum(e_true[row[row > 0]]) for row in z])
    np.testing.assert_allclose(reference_energies(z, y)[[1, 6, 8]], e_true[[1, 6, 8]], rtol=1e-12)


def test_validation_rows_with_elements_the_training_rows_lack_are_counted():
    from mess.train.supervised import _unseen_elements

    z = np.array([[8, 1, 1, 0], [6, 1, 1, 1], [9, 6, 1, 0], [7, 1, 1, 1]])
    assert _unseen_elements(z, np.array([0, 1]), np.array([2, 3])) == 2   # F and N unseen
    assert _unseen_elements(z, np.array([0, 1, 2]), np.array([1, 3])) == 1  # only the N row


def test_nested_subsets_are_random_rows_led_by_one_row_per_element():
    from mess.train.supervised import nested_order

    rng = np.random.default_rng(0)
    z = np.where(rng.random((200, 6)) < 0.8, 1, 6)  # H and C everywhere
    z[:, -1] = 0  # padding
    z[151, 0], z[191, 1] = 9, 7  # one fluorine row, one nitrogen row, late in the dataset
    tr = np.arange(0, 200, 2).tolist() + [151, 191]
    tr = np.sort(tr)
    ranked = nested_order(z, tr, seed=3)
    assert sorted(ranked.tolist()) == tr.tolist()
    head = set(ranked[:4].tolist())
    assert {151, 191} <= head  # every element in the smallest subsets
    assert not np.array_equal(np.sort(ranked[:20]), tr[:20])  # not the dataset's first rows
    np.testing.assert_array_equal(ranked, nested_order(z, tr, seed=3))


def test_summary_lines_without_a_ratio_or_with_unconverged_references():
    from mess.cli import summary_text

    m = {"geometries": 2, "energy_error_mha": 0.0, "minao_energy_error_mha": 1.0, "improvement_over_minao": None,
         "scf_iterations_model": None, "reference_unconverged": 1}
    text = summary_text(m, "out")
    assert "x closer" not in text and "1 held-out reference SCF(s) did not converge" in text
