"""Training with the DFT energy as the loss (see :mod:`mess.train.objective`), the
loop that runs it (:func:`train`, ``mess train``) and its settings (:class:`TrainConfig`)."""

from mess.train.batch import (TrainingBatch, baseline_energies, batch_loss, device_batch, host_batches, item_energies,
                              training_batches)
from mess.train.config import TrainConfig
from mess.train.evaluate import Evaluator
from mess.train.loop import Trainer, train
from mess.train.model import AOTokens, AOTransformer, ao_tokens, physics_matrices
from mess.train.objective import EnergyProblem, energy_problem, predicted_density, predicted_energy

__all__ = ["AOTokens", "AOTransformer", "EnergyProblem", "Evaluator", "TrainConfig", "Trainer", "TrainingBatch",
           "ao_tokens", "baseline_energies", "batch_loss", "device_batch", "energy_problem", "host_batches",
           "item_energies", "physics_matrices", "predicted_density", "predicted_energy", "train",
           "training_batches"]
