"""SynthTalk, the built-in corpus: `python -m mmtalker_jax.data.synthetic --out DIR`.

`SynthSpec` is light (configs import it); the generator (scipy, numba) loads
on first use of `generate` and the others.
"""

from mmtalker_jax.data.synthetic.spec import SynthSpec

__all__ = ["SynthSpec", "generate", "sequence_name", "tree_digest"]


def __getattr__(name: str):
  if name in ("generate", "sequence_name", "tree_digest"):
    from mmtalker_jax.data.synthetic import corpus
    return getattr(corpus, name)
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
