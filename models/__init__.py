"""The variational autoencoder: architecture, loss, checkpoints and training. Knows tensors only."""
