"""mmtalker-jax: speech-driven 3D facial animation (MMTalker) in JAX/Flax."""

__version__ = "0.1.0"
