"""Networks that map a molecule to a symmetric AO-basis Fock correction ``W``.

:class:`AOTransformer` reads the molecule as a set of atomic orbitals: each AO is a
token embedded from its element and shell (an element-specific AO embedding) and its
angular momentum, and attention between AOs is biased, per head, by the AO-level
physics of the geometry: the overlap, the core Hamiltonian, the MINAO density and its
Fock matrix, and the density and Fock matrix one SCF step later (the recipe of
Mathiasen et al. 2024). The output is
``W = sum_c (gamma_c o M_c)``: each physics matrix ``M_c`` scaled elementwise by a
symmetric factor ``gamma_c[i, j] = <u_c(h_i), v_c(h_j)>`` (symmetrised) of the AO
features, plus a learned constant per matrix, zero on padding AOs.

Symmetry (exact): under a rotation of the molecule the AO matrices transform block by
block, ``M[a, b] -> R_a M[a, b] R_b^T`` for shells ``a``, ``b``. The network sees only
invariants of them (the Frobenius norm of every shell-pair block biases the
attention), and the tokens of one shell's AOs are equal (element, shell, angular
momentum; not the component), so every AO of a shell has the same features and
``gamma_c`` is constant on each shell-pair block. ``W`` then transforms as the
``M_c`` do, and the predicted energy is invariant under rotations and translations
(tested to 1e-9 Ha for HF, where no quadrature grid breaks the symmetry).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from mess.basis.shells import BasisLayout, BasisShape
from mess.errors import InputError

#: Most shells per atom the token table distinguishes.
MAX_SHELLS = 16
#: Largest angular momentum with a token.
MAX_L = 7
#: Elements with a token (Z < 87).
NUM_ELEMENTS = 87
#: Physics matrices the attention and the output read: S, H_core, D_MINAO, F[D_MINAO],
#: and the density of F[D_MINAO] with its Fock matrix (one SCF step).
NUM_PHYSICS = 6


class AOTokens(eqx.Module):
    """The AO tokens of one molecule in a signature's AO order (built on the host as
    NumPy arrays; JAX arrays once on the device).

    Attributes:
        shell: ``Z * MAX_SHELLS + (shell index on its atom)`` per AO ``[n]``.
        angular: the shell's angular momentum ``l`` per AO ``[n]``.
        block: the shell each AO belongs to (padding AOs: a block of their own) ``[n]``.
        mask: real (not padding) AOs ``[n]``.
    """

    shell: Int[Array, " n"]
    angular: Int[Array, " n"]
    block: Int[Array, " n"]
    mask: Bool[Array, " n"]


def ao_tokens(layout: BasisLayout, numbers, shape: BasisShape) -> AOTokens:
    """:class:`AOTokens` of a molecule with basis ``layout`` and atomic ``numbers``,
    padded to the signature's basis ``shape``."""
    n = shape.nao
    shell = np.zeros(n, np.int32)
    angular = np.zeros(n, np.int32)
    block = -1 - np.arange(n, dtype=np.int32)
    mask = np.zeros(n, bool)
    start = layout.engine_offsets(shape)
    seen: dict[int, int] = {}
    for s in range(layout.nshell):
        atom = int(layout.atom[s])
        k = seen.get(atom, 0)
        seen[atom] = k + 1
        rows = start[s] + np.arange(layout.sizes[s])
        shell[rows] = int(numbers[atom]) * MAX_SHELLS + min(k, MAX_SHELLS - 1)
        angular[rows] = int(layout.l[s])
        block[rows] = s
        mask[rows] = True
    return AOTokens(shell, angular, block, mask)


def block_norms(tokens: AOTokens, m: Float[Array, "c n n"]) -> Float[Array, "c n n"]:
    """Frobenius norm of the shell-pair block holding each element of ``m``: invariant
    under rotations of the molecule (the blocks transform by orthogonal matrices)."""
    same = (tokens.block[:, None] == tokens.block[None, :]).astype(m.dtype)
    sq = jnp.einsum("ik,ckl,jl->cij", same, m * m, same)
    return jnp.sqrt(sq + 1e-30)


class _Layer(eqx.Module):
    norm1: eqx.nn.LayerNorm
    norm2: eqx.nn.LayerNorm
    qkv: eqx.nn.Linear
    out: eqx.nn.Linear
    mlp1: eqx.nn.Linear
    mlp2: eqx.nn.Linear
    physics_bias: Float[Array, "heads c"]
    heads: int = eqx.field(static=True)

    def __init__(self, width: int, heads: int, key: PRNGKeyArray):
        k = jax.random.split(key, 4)
        self.norm1 = eqx.nn.LayerNorm(width)
        self.norm2 = eqx.nn.LayerNorm(width)
        self.qkv = eqx.nn.Linear(width, 3 * width, key=k[0])
        self.out = eqx.nn.Linear(width, width, key=k[1])
        self.mlp1 = eqx.nn.Linear(width, 2 * width, key=k[2])
        self.mlp2 = eqx.nn.Linear(2 * width, width, key=k[3])
        self.physics_bias = jnp.zeros((heads, NUM_PHYSICS))
        self.heads = heads

    def __call__(self, h: Float[Array, "n d"], invariants: Float[Array, "c n n"], mask: Bool[Array, " n"]):
        n, d = h.shape
        dh = d // self.heads
        qkv = jax.vmap(self.qkv)(jax.vmap(self.norm1)(h)).reshape(n, 3, self.heads, dh)
        q, k, v = qkv[:, 0], qkv[:, 1], qkv[:, 2]
        logits = jnp.einsum("ihd,jhd->hij", q, k) / jnp.sqrt(dh)
        logits = logits + jnp.einsum("hc,cij->hij", self.physics_bias, invariants)
        logits = jnp.where(mask[None, None, :], logits, -1e9)
        att = jax.nn.softmax(logits, axis=-1)
        mixed = jnp.einsum("hij,jhd->ihd", att, v).reshape(n, d)
        h = h + jax.vmap(self.out)(mixed)
        return h + jax.vmap(lambda x: self.mlp2(jax.nn.gelu(self.mlp1(x))))(jax.vmap(self.norm2)(h))


class AOTransformer(eqx.Module):
    """AO tokens and physics matrices to a symmetric Fock correction ``W`` (Hartree).

    Args:
        width: token width; heads: attention heads (dividing ``width``); layers:
            attention blocks; rank: width of the factors ``u_c``, ``v_c``.
        key: JAX random key.

    ``tiny()`` (width 16, one layer, for CPUs and tests) and ``small()`` (width 64,
    four layers) are the named sizes. At initialisation ``W`` is small (the factors'
    output layers are scaled by 0.01) and the predicted density is about that of one
    SCF step from MINAO.
    """

    shell_embedding: eqx.nn.Embedding
    angular_embedding: eqx.nn.Embedding
    layers: tuple[_Layer, ...]
    to_u: eqx.nn.Linear
    to_v: eqx.nn.Linear
    physics_weights: Float[Array, " c"]
    rank: int = eqx.field(static=True)

    def __init__(self, width: int = 16, heads: int = 2, layers: int = 1, rank: int = 8, *, key: PRNGKeyArray):
        if width % heads:
            raise InputError(f"width {width} is not a multiple of heads {heads}")
        k = jax.random.split(key, layers + 4)
        self.shell_embedding = eqx.nn.Embedding(NUM_ELEMENTS * MAX_SHELLS, width, key=k[0])
        self.angular_embedding = eqx.nn.Embedding(MAX_L + 1, width, key=k[1])
        self.layers = tuple(_Layer(width, heads, k[4 + i]) for i in range(layers))

        def small(layer):
            return eqx.tree_at(lambda m: m.weight, layer, replace_fn=lambda w: 0.01 * w)

        self.to_u = small(eqx.nn.Linear(width, NUM_PHYSICS * rank, key=k[2]))
        self.to_v = small(eqx.nn.Linear(width, NUM_PHYSICS * rank, key=k[3]))
        self.physics_weights = jnp.zeros(NUM_PHYSICS)
        self.rank = rank

    @classmethod
    def tiny(cls, key: PRNGKeyArray) -> AOTransformer:
        return cls(16, 2, 1, 8, key=key)

    @classmethod
    def small(cls, key: PRNGKeyArray) -> AOTransformer:
        return cls(64, 4, 4, 16, key=key)

    def __call__(self, tokens: AOTokens, physics: Float[Array, "c n n"]) -> Float[Array, "n n"]:
        h = jax.vmap(self.shell_embedding)(tokens.shell) + jax.vmap(self.angular_embedding)(tokens.angular)
        invariants = block_norms(tokens, physics)
        for layer in self.layers:
            h = layer(h, invariants, tokens.mask)
        n = h.shape[0]
        u = jax.vmap(self.to_u)(h).reshape(n, NUM_PHYSICS, self.rank)
        v = jax.vmap(self.to_v)(h).reshape(n, NUM_PHYSICS, self.rank)
        gamma = 0.5 * (jnp.einsum("icr,jcr->cij", u, v) + jnp.einsum("jcr,icr->cij", u, v))
        gamma = gamma + self.physics_weights[:, None, None]
        w = jnp.sum(gamma * physics, axis=0)
        mask = tokens.mask[:, None] & tokens.mask[None, :]
        return jnp.where(mask, w, 0.0)


def physics_matrices(problem) -> Float[Array, "6 n n"]:
    """S, H_core, the MINAO density and its Fock matrix, and the density and Fock
    matrix one SCF step later (spin-summed densities and spin-averaged Fock matrices
    for unrestricted problems) of an :class:`~mess.train.objective.EnergyProblem`: the
    network's view of the geometry (the inputs of Mathiasen et al. 2024: core
    Hamiltonian, overlap, MINAO density and one DFT step built from it)."""
    return jnp.stack([problem.ham.overlap, problem.ham.hcore, jnp.sum(problem.dm_guess, axis=0),
                      jnp.mean(problem.fock0, axis=0), jnp.sum(problem.dm_step, axis=0),
                      jnp.mean(problem.fock_step, axis=0)])
