"""Training: datasets, camera simulation, losses, trainers, evaluation, export."""
