"""Key motions (KMTalk, arXiv 2409.01113): phones -> visemes -> key frames.

  phones.py   phone timelines: SynthTalk's generator, alignment files, pocketsphinx
  visemes.py  the phone -> viseme table and where a viseme peaks (key frames)
  align.py    `python -m mmtalker_jax.keymotion.align AUDIO --fps 30 --out keys.json`
"""
