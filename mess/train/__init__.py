"""Training with the DFT energy as the loss (see :mod:`mess.train.objective`)."""

from mess.train.batch import TrainingBatch, batch_loss, item_energies, training_batches
from mess.train.model import AOTokens, AOTransformer, ao_tokens, physics_matrices
from mess.train.objective import EnergyProblem, energy_problem, predicted_density, predicted_energy

__all__ = ["AOTokens", "AOTransformer", "EnergyProblem", "TrainingBatch", "ao_tokens", "batch_loss",
           "energy_problem", "item_energies", "physics_matrices", "predicted_density", "predicted_energy",
           "training_batches"]
