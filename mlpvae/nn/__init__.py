"""The nn layer (above accel): the MLP VAE itself, its layers, likelihoods, Adam,
Jacobians, model stacks and batched passes."""
