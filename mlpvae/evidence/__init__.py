"""The evidence layer (above training): log p(x) of trained models by IWAE, Laplace
(Eq. (16)), grid and posterior mode."""
