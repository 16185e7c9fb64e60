"""Stage programs kept serialised on disk (``mess.engine.stored``): a new engine with
the same store loads them instead of tracing, and gives the same numbers bit for bit."""

import numpy as np

import mess
from mess.engine.stored import ProgramStore

from molecules import WATER


def test_a_new_engine_loads_the_stored_programs_and_agrees_bit_for_bit(tmp_path):
    mol = mess.Molecule.from_xyz(WATER)
    store = ProgramStore(tmp_path / "programs")
    first = mess.run(mol, "sto-3g", "hf", engine=mess.Engine(store=store))
    assert store.writes > 0 and store.hits == 0 and store.failures == 0
    written = store.writes

    again = ProgramStore(tmp_path / "programs")
    second = mess.run(mol, "sto-3g", "hf", engine=mess.Engine(store=again))
    assert again.hits == written and again.writes == 0
    plain = mess.run(mol, "sto-3g", "hf", engine=mess.Engine())
    for res in (second, plain):
        assert float(res.energy) == float(first.energy)
        np.testing.assert_array_equal(res.mo_energy, first.mo_energy)
        np.testing.assert_array_equal(res.dipole, first.dipole)

    # an unreadable file is traced again and replaced, never trusted
    victim = sorted((tmp_path / "programs").glob("*.jaxexport"))[0]
    victim.write_bytes(b"not a program")
    third = ProgramStore(tmp_path / "programs")
    res = mess.run(mol, "sto-3g", "hf", engine=mess.Engine(store=third))
    assert float(res.energy) == float(first.energy)
    assert third.writes == 1 and third.hits == written - 1
    assert not list((tmp_path / "programs").glob(".tmp-*"))


def test_the_file_depends_on_the_source_and_refuses_abbreviated_keys(tmp_path):
    import jax

    store = ProgramStore(tmp_path)
    leaves = [np.zeros((2, 3))]
    treedef = jax.tree.structure((leaves[0],))
    one = store.file_for(("scf", 1), treedef, leaves)
    assert one == store.file_for(("scf", 1), treedef, leaves)
    assert one != store.file_for(("scf", 2), treedef, leaves)
    assert one != store.file_for(("scf", 1), treedef, [np.zeros((2, 4))])
    store._source = "edited"
    assert one != store.file_for(("scf", 1), treedef, leaves)
    assert store.file_for(("scf", np.arange(10_000)), treedef, leaves) is None
