"""mess.xc against libxc as PySCF calls it (pyscf.dft.libxc.eval_xc).

Energy densities e = rho * eps and first derivatives (vrho, vsigma from
jax.grad of sum(e)) are compared point by point on sweeps of densities
(1e-10 .. 1e3 Bohr^-3, plus points around every density threshold) and reduced
gradients (0 .. 100), restricted and spin-polarised (including fully polarised
and very asymmetric points).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pyscf.dft import libxc

import mess.xc as xc
from mess.xc import COMPONENTS, parse_xc

RTOL = 1e-10
# Every error is also bounded by ATOL_REL times the natural magnitude of the
# quantity at that density (see _errors); values below TINY times that
# magnitude are judged by this bound only (they are round-off of
# cancellations, e.g. LYP for a fully polarised density).
ATOL_REL = 1e-11
TINY = 1e-4

FUNCTIONAL_NAMES = [
    "lda",
    "lda,vwn",
    "svwn",
    "slater,vwn5",
    "lda,vwn_rpa",
    "lda,pw",
    "lda,pw_mod",
    "pbe",
    "pbe,pbe",
    "blyp",
    "b88,lyp",
    "b3lyp",
    "b3lyp5",
    "pbe0",
    "0.5*b3lyp+0.5*pbe0",
]

# ---------------------------------------------------------------------------
# Sample points
# ---------------------------------------------------------------------------

_KF = 2.0 * (3.0 * math.pi**2) ** (1.0 / 3.0)  # sigma = (KF s rho^(4/3))^2


def _restricted_points() -> tuple[np.ndarray, np.ndarray]:
    """rho [N], sigma [N]: a log sweep of densities times reduced gradients s."""
    rho = np.concatenate(
        [
            np.logspace(-10, 3, 27),
            # around the thresholds 1e-15, 1e-14, 1e-12 (and 2x, since exchange
            # screens each spin channel at rho/2)
            np.array([t * f for t in (1e-15, 2e-15, 1e-14, 2e-14, 1e-12, 2e-12) for f in (0.9, 1.0, 1.1)]),
            np.array([0.0, 1e-300, 1e-20]),
        ]
    )
    s = np.array([0.0, 1e-4, 0.05, 0.5, 1.0, 3.0, 10.0, 100.0])
    rr, ss = np.meshgrid(rho, s, indexing="ij")
    rr, ss = rr.ravel(), ss.ravel()
    sigma = (_KF * ss * rr ** (4.0 / 3.0)) ** 2
    return rr, sigma


def _polarized_points() -> tuple[np.ndarray, ...]:
    """rho_a, rho_b, sigma_aa, sigma_ab, sigma_bb [N] (consistent gradients)."""
    rho_tot = np.concatenate([np.logspace(-10, 3, 14), np.array([1e-15, 2.2e-15, 1.1e-14, 1.1e-12, 0.0])])
    frac_b = np.array([0.0, 1e-12, 1e-6, 0.01, 0.3, 0.5, 0.9, 1.0])
    s_a = np.array([0.0, 0.1, 1.0, 10.0])
    s_b = np.array([0.0, 0.5, 5.0])
    cosines = np.array([-1.0, 0.3, 1.0])
    grids = np.meshgrid(rho_tot, frac_b, s_a, s_b, cosines, indexing="ij")
    rt, fb, sa, sb, cs = (g.ravel() for g in grids)
    ra, rb = rt * (1.0 - fb), rt * fb
    ga = _KF * sa * (2.0 * ra) ** (4.0 / 3.0) / 2.0  # |grad rho_a|, spin-scaled s
    gb = _KF * sb * (2.0 * rb) ** (4.0 / 3.0) / 2.0
    return ra, rb, ga**2, cs * ga * gb, gb**2, ga, gb, cs


# ---------------------------------------------------------------------------
# References and mess evaluation
# ---------------------------------------------------------------------------


def _ref_restricted(name: str, rho, sigma, gga: bool):
    """PySCF/libxc (e, vrho, vsigma) for spin=0."""
    if gga:
        inp = np.zeros((4, rho.size))
        inp[0], inp[1] = rho, np.sqrt(sigma)
    else:
        inp = rho
    eps, vxc = libxc.eval_xc(name, inp, spin=0, deriv=1)[:2]
    vsigma = vxc[1] if gga and vxc[1] is not None else np.zeros_like(rho)
    return rho * eps, vxc[0], vsigma


def _ref_polarized(name: str, pts, gga: bool):
    """PySCF/libxc (e, vrho [N,2], vsigma [N,3]) for spin=1."""
    ra, rb, _, _, _, ga, gb, cs = pts
    n = ra.size
    if gga:
        inp = np.zeros((2, 4, n))
        inp[0, 0], inp[1, 0] = ra, rb
        inp[0, 1] = ga
        inp[1, 1], inp[1, 2] = gb * cs, gb * np.sqrt(np.clip(1.0 - cs**2, 0.0, None))
    else:
        inp = np.stack([ra, rb])
    eps, vxc = libxc.eval_xc(name, inp, spin=1, deriv=1)[:2]
    vsigma = vxc[1] if gga and vxc[1] is not None else np.zeros((n, 3))
    return (ra + rb) * eps, vxc[0], vsigma


def _mess_restricted(fn, rho, sigma):
    """(e, vrho, vsigma) from one forward pass and its VJP with ones."""
    e, vjp = jax.vjp(fn, jnp.asarray(rho), jnp.asarray(sigma))
    vr, vs = vjp(jnp.ones_like(e))
    return np.asarray(e), np.asarray(vr), np.asarray(vs)


def _mess_polarized(fn, pts):
    """(e, vrho [N,2], vsigma [N,3]) from one forward pass and its VJP."""
    e, vjp = jax.vjp(fn, *(jnp.asarray(a) for a in pts[:5]))
    g = vjp(jnp.ones_like(e))
    return np.asarray(e), np.stack(g[:2], axis=1), np.stack(g[2:], axis=1)


def _group_scale(ref: np.ndarray, rho: np.ndarray) -> np.ndarray:
    """Natural magnitude of a quantity at each point: max |ref| over all sampled
    points (all gradients, polarisations and components) with the same total density."""
    ref = np.abs(ref).reshape(rho.size, -1).max(axis=1)
    keys = np.round(np.log10(np.maximum(rho, 1e-300)), 6)
    scale = np.zeros_like(ref)
    for k in np.unique(keys):
        sel = keys == k
        scale[sel] = ref[sel].max()
    return scale[:, None]


def _errors(ours, ref, rho):
    """For each of (e, vrho, vsigma): (max relative error, max error / natural scale).

    The relative error is |ours - ref| / |ref|; points where |ref| is below
    TINY * scale (values that are cancellation noise, e.g. LYP for a fully
    polarised density, PBE correlation at huge gradients) are judged by the
    second number instead.
    """
    out = []
    for o, r in zip(ours, ref):
        o = np.asarray(o).reshape(rho.size, -1)
        r = np.asarray(r).reshape(rho.size, -1)
        assert np.all(np.isfinite(o)), "non-finite values"
        scale = _group_scale(r, rho)
        diff = np.abs(o - r)
        tiny = np.abs(r) <= TINY * scale
        rel = np.where(tiny, 0.0, diff / np.where(tiny, 1.0, np.abs(r)))
        absn = np.where(scale > 0, diff / np.where(scale > 0, scale, 1.0), diff)
        out.append((float(rel.max()), float(absn.max())))
    return out


def _check(name, ours, ref, rho):
    errs = _errors(ours, ref, rho)
    for q, (rel, absn) in zip(("e", "vrho", "vsigma"), errs):
        assert rel < RTOL and absn < ATOL_REL, f"{name} {q}: rel err {rel:.2e}, err/scale {absn:.2e}"


# ---------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def restricted_points():
    return _restricted_points()


@pytest.fixture(scope="module")
def polarized_points():
    return _polarized_points()


@pytest.mark.parametrize("name", sorted(COMPONENTS))
def test_component_restricted(name, restricted_points):
    comp = COMPONENTS[name]
    rho, sigma = restricted_points
    gga = comp.family == "gga"
    ref = _ref_restricted(name, rho, sigma, gga)
    ours = _mess_restricted(lambda r, s: comp.exc_restricted(r, s if gga else None), rho, sigma)
    _check(name, ours, ref, rho)


@pytest.mark.parametrize("name", sorted(COMPONENTS))
def test_component_polarized(name, polarized_points):
    comp = COMPONENTS[name]
    gga = comp.family == "gga"
    ref = _ref_polarized(name, polarized_points, gga)
    ours = _mess_polarized(comp.exc_polarized, polarized_points)
    rho = polarized_points[0] + polarized_points[1]
    _check(name, ours, ref, rho)


@pytest.mark.parametrize("name", FUNCTIONAL_NAMES)
def test_functional_restricted(name, restricted_points):
    f = parse_xc(name)
    rho, sigma = restricted_points
    gga = f.family == "gga"
    ref = _ref_restricted(name, rho, sigma, gga)
    ours = _mess_restricted(f.exc_restricted, rho, sigma)
    _check(name, ours, ref, rho)


@pytest.mark.parametrize("name", FUNCTIONAL_NAMES)
def test_functional_polarized(name, polarized_points):
    f = parse_xc(name)
    gga = f.family == "gga"
    ref = _ref_polarized(name, polarized_points, gga)
    ours = _mess_polarized(f.exc_polarized, polarized_points)
    rho = polarized_points[0] + polarized_points[1]
    _check(name, ours, ref, rho)


@pytest.mark.parametrize(
    "name, hyb, family, components",
    [
        ("lda", 0.0, "lda", {"lda_x": 1.0}),
        ("lda,vwn", 0.0, "lda", {"lda_x": 1.0, "lda_c_vwn": 1.0}),
        ("svwn", 0.0, "lda", {"lda_x": 1.0, "lda_c_vwn": 1.0}),
        ("slater,vwn5", 0.0, "lda", {"lda_x": 1.0, "lda_c_vwn": 1.0}),
        ("pbe", 0.0, "gga", {"gga_x_pbe": 1.0, "gga_c_pbe": 1.0}),
        ("blyp", 0.0, "gga", {"gga_x_b88": 1.0, "gga_c_lyp": 1.0}),
        ("b3lyp", 0.2, "gga", {"lda_x": 0.08, "gga_x_b88": 0.72, "lda_c_vwn_rpa": 0.19, "gga_c_lyp": 0.81}),
        ("b3lyp5", 0.2, "gga", {"lda_x": 0.08, "gga_x_b88": 0.72, "lda_c_vwn": 0.19, "gga_c_lyp": 0.81}),
        ("pbe0", 0.25, "gga", {"gga_x_pbe": 0.75, "gga_c_pbe": 1.0}),
        ("hf", 1.0, "hf", {}),
    ],
)
def test_parse_xc_meaning(name, hyb, family, components):
    f = parse_xc(name)
    assert isinstance(f, xc.Functional)
    assert f.name == name
    assert f.hyb == pytest.approx(hyb, abs=1e-15)
    assert f.family == family
    got = dict(f.components)
    assert got.keys() == components.keys()
    for k, v in components.items():
        assert got[k] == pytest.approx(v, abs=1e-14)


@pytest.mark.parametrize("name", ["camb3lyp", "wb97x", "tpss", "lda,wigner", "b97", "nonsense_xc"])
def test_parse_xc_rejects(name):
    with pytest.raises(ValueError):
        parse_xc(name)


def test_unsupported_component_is_named():
    with pytest.raises(ValueError, match="MGGA_X_TPSS"):
        parse_xc("tpss")


def test_hf_has_no_semilocal_energy():
    f = parse_xc("hf")
    rho = jnp.array([0.0, 0.1, 1.0])
    assert np.all(np.asarray(f.exc_restricted(rho, rho)) == 0.0)
    assert np.all(np.asarray(f.exc_polarized(rho, rho, rho, rho, rho)) == 0.0)


@pytest.mark.parametrize("name", ["lda", "svwn", "pbe", "blyp", "b3lyp", "b3lyp5", "pbe0"])
def test_zero_and_tiny_density_is_nan_free(name):
    """rho = 0 exactly (padding) gives e = 0 and zero, finite gradients."""
    f = parse_xc(name)
    rho = jnp.array([0.0, 0.0, 1e-300, 1e-30, 1e-16, 1e-13, 1e-11])
    sigma = jnp.array([0.0, 1e-3, 0.0, 1e-50, 1e-40, 1e-20, 1e-12])

    def total_r(r, s):
        return jnp.sum(f.exc_restricted(r, s))

    e = f.exc_restricted(rho, sigma)
    assert np.all(np.isfinite(np.asarray(e)))
    assert float(e[0]) == 0.0 and float(e[1]) == 0.0
    g = jax.grad(total_r, argnums=(0, 1))(rho, sigma)
    for gi in g:
        assert np.all(np.isfinite(np.asarray(gi)))
        assert float(gi[0]) == 0.0

    z = jnp.zeros_like(rho)

    def total_u(ra, rb, saa, sab, sbb):
        return jnp.sum(f.exc_polarized(ra, rb, saa, sab, sbb))

    args = (rho, z, sigma, z, z)
    e = f.exc_polarized(*args)
    assert float(e[0]) == 0.0
    g = jax.grad(total_u, argnums=(0, 1, 2, 3, 4))(*args)
    for gi in g:
        assert np.all(np.isfinite(np.asarray(gi)))
        assert float(gi[0]) == 0.0
    # all-zero spin-polarised point including its second derivative direction
    hv = jax.grad(lambda r: jnp.sum(jax.grad(total_r)(r, sigma)))(rho)
    assert np.all(np.isfinite(np.asarray(hv[:2])))


def test_jit_vmap_and_finite_differences():
    """vmap over a batch of grids equals the loop; grad matches central differences."""
    f = parse_xc("b3lyp")
    key = np.random.default_rng(0)
    rho = jnp.asarray(key.uniform(0.01, 2.0, size=(3, 16)))
    sigma = jnp.asarray(key.uniform(0.0, 1.0, size=(3, 16)))
    batched = jax.vmap(jax.jit(f.exc_restricted))(rho, sigma)
    looped = jnp.stack([f.exc_restricted(rho[i], sigma[i]) for i in range(3)])
    np.testing.assert_allclose(np.asarray(batched), np.asarray(looped), rtol=1e-14)

    def energy(r):
        return jnp.sum(f.exc_restricted(r, sigma[0]))

    g = jax.grad(energy)(rho[0])
    h = 1e-6
    for i in range(3):
        dr = jnp.zeros_like(rho[0]).at[i].set(h)
        fd = (energy(rho[0] + dr) - energy(rho[0] - dr)) / (2 * h)
        assert float(g[i]) == pytest.approx(float(fd), rel=1e-7)


def test_functional_is_static_pytree():
    """A Functional has no array leaves: it can be closed over or passed through jit."""
    f = parse_xc("pbe0")
    assert jax.tree_util.tree_leaves(f) == []
    out = jax.jit(lambda fn, r, s: fn.exc_restricted(r, s))(f, jnp.array([0.3]), jnp.array([0.1]))
    assert np.isfinite(float(out[0]))


@pytest.mark.parametrize("name", ["svwn", "pbe", "b3lyp"])
def test_negative_and_inconsistent_inputs_match_libxc(name):
    """Slightly negative densities (grid noise) are floored like libxc, straight-through."""
    f = parse_xc(name)
    gga = f.family == "gga"
    ra = np.array([0.3, 1e-3, 2.0, -1e-12, 1e-14])
    rb = np.array([-1e-12, -1e-9, 1e-16, -1e-12, -1e-13])
    ga = np.array([0.2, 1e-3, 1.0, 1e-6, 1e-14])
    gb = np.array([1e-8, 1e-9, 1e-12, 1e-6, 1e-14])
    cs = np.array([0.5, -1.0, 1.0, 0.0, 1.0])
    pts = (ra, rb, ga**2, cs * ga * gb, gb**2, ga, gb, cs)
    ref = _ref_polarized(name, pts, gga)
    ours = _mess_polarized(f.exc_polarized, pts)
    for o, r in zip(ours, ref):
        np.testing.assert_allclose(np.asarray(o).reshape(r.shape), r, rtol=1e-10, atol=1e-25)
    rho = np.array([-1e-10, -1e-20, 0.5])
    sigma = np.array([1e-3, 0.0, 0.1])
    ref = _ref_restricted(name, rho, sigma, gga)
    ours = _mess_restricted(f.exc_restricted, rho, sigma)
    for o, r in zip(ours, ref):
        np.testing.assert_allclose(o, r, rtol=1e-10, atol=1e-25)
