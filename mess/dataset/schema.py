"""Parquet columns of a generated dataset, with their units.

Two schemas:

* ``native`` (default): one row per conformer, atomic units for energies, Angstrom for
  positions (as xyz files), Debye for dipoles; see :data:`NATIVE_UNITS`.
* ``qm1b``: the columns and units of QM1B (Mathiasen et al., NeurIPS 2023 Datasets and
  Benchmarks): ``smile, atoms, z, energy, homo, lumo, N, std, y, pos`` with energies
  in eV, ``y`` the HOMO-LUMO gap in eV and ``pos`` in Bohr, so QM1B loaders read the
  files unchanged.

Units are stored twice: per field (``unit`` in the field metadata) and for the file
(``units``: a JSON object in the schema's key-value metadata), with the method
(``mess.method``: basis, functional, grid level, SCF mode, precision, version).
"""

from __future__ import annotations

import json

import numpy as np

from mess.errors import InputError
from mess.structure import BOHR, ELEMENTS

#: Hartree in eV (CODATA 2018, as PySCF's ``HARTREE2EV``).
HARTREE_EV = 27.211386245988

NATIVE_UNITS = {
    "mol_id": "", "smiles": "", "conformer_id": "", "atomic_numbers": "",
    "positions": "Angstrom (flattened [natom * 3])", "energy": "Hartree", "homo": "Hartree", "lumo": "Hartree",
    "gap": "Hartree", "dipole": "Debye", "mulliken": "e", "converged": "", "iterations": "",
    "energy_std_last5": "Hartree", "n_ao": "", "forces": "Hartree/Bohr (flattened [natom * 3])",
}
QM1B_UNITS = {"smile": "", "atoms": "", "z": "", "energy": "eV", "homo": "eV", "lumo": "eV", "N": "",
              "std": "eV", "y": "eV (HOMO-LUMO gap)", "pos": "Bohr (flattened [natom * 3])"}
SCHEMAS = ("native", "qm1b")


def arrow_schema(schema: str, forces: bool, method: dict):
    """The pyarrow schema of a shard (``schema`` is ``native`` or ``qm1b``)."""
    import pyarrow as pa

    if schema == "native":
        fields = [("mol_id", pa.string()), ("smiles", pa.string()), ("conformer_id", pa.int32()),
                  ("atomic_numbers", pa.list_(pa.int8())), ("positions", pa.list_(pa.float64())),
                  ("energy", pa.float64()), ("homo", pa.float64()), ("lumo", pa.float64()), ("gap", pa.float64()),
                  ("dipole", pa.list_(pa.float64(), 3)), ("mulliken", pa.list_(pa.float64())),
                  ("converged", pa.bool_()), ("iterations", pa.int32()), ("energy_std_last5", pa.float64()),
                  ("n_ao", pa.int32())]
        if forces:
            fields.append(("forces", pa.list_(pa.float64())))
        units = NATIVE_UNITS
    elif schema == "qm1b":
        fields = [("smile", pa.string()), ("atoms", pa.string()), ("z", pa.list_(pa.int32())),
                  ("energy", pa.float64()), ("homo", pa.float64()), ("lumo", pa.float64()), ("N", pa.int32()),
                  ("std", pa.float64()), ("y", pa.float64()), ("pos", pa.list_(pa.float64()))]
        units = QM1B_UNITS
    else:
        raise InputError(f"unknown schema {schema!r} (use one of {', '.join(SCHEMAS)})")
    out = [pa.field(n, t, metadata={"unit": units[n]} if units[n] else None) for n, t in fields]
    meta = {"units": json.dumps({n: units[n] for n, _ in fields if units[n]}), "mess.method": json.dumps(method),
            "mess.schema": schema}
    return pa.schema(out, metadata=meta)


def rows(schema: str, mol_id: str, smiles: str, conformer_id: int, molecule, result, forces: bool) -> dict:
    """One row (a dict of Python values) for a conformer's :class:`mess.Result`."""
    numbers = [int(z) for z in molecule.numbers]
    pos_bohr = np.asarray(molecule.positions, dtype=np.float64)
    homo, lumo = float(result.homo), float(result.lumo)
    std = None if result.energy_std_last5 is None else float(result.energy_std_last5)
    if schema == "qm1b":
        return {"smile": smiles, "atoms": "".join(ELEMENTS[z] for z in numbers), "z": numbers,
                "energy": float(result.energy) * HARTREE_EV, "homo": homo * HARTREE_EV, "lumo": lumo * HARTREE_EV,
                "N": int(result.nao), "std": None if std is None else std * HARTREE_EV,
                "y": (lumo - homo) * HARTREE_EV, "pos": pos_bohr.ravel().tolist()}
    row = {"mol_id": mol_id, "smiles": smiles, "conformer_id": int(conformer_id), "atomic_numbers": numbers,
           "positions": (pos_bohr * BOHR).ravel().tolist(), "energy": float(result.energy), "homo": homo,
           "lumo": lumo, "gap": lumo - homo, "dipole": [float(x) for x in np.asarray(result.dipole)],
           "mulliken": [float(x) for x in np.asarray(result.mulliken)], "converged": bool(result.converged),
           "iterations": int(result.iterations), "energy_std_last5": std, "n_ao": int(result.nao)}
    if forces:
        row["forces"] = (-np.asarray(result.gradient, dtype=np.float64)).ravel().tolist()
    return row
