"""The training layer (above nn): configs, data, random streams, checkpoints, run directories and the training loop."""
