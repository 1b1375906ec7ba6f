"""SynthTalk, the built-in corpus: `python -m mmtalker_jax.data.synthetic --out DIR`."""

from mmtalker_jax.data.synthetic.corpus import SynthSpec, generate, sequence_name, tree_digest

__all__ = ["SynthSpec", "generate", "sequence_name", "tree_digest"]
