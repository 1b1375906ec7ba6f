"""SynthTalk, the built-in corpus, sized for a 2-core CPU.

`python train.py --config configs/default.py --workdir runs/synthtalk`
"""

import ml_collections

from mmtalker_jax.data.synthetic import SynthSpec


def synthtalk_data(spec: SynthSpec, root: str) -> ml_collections.ConfigDict:
  """The data section for a SynthTalk corpus of `spec` at `root`."""
  data = ml_collections.ConfigDict()
  data.root = root
  # Generate the corpus at `root` when it is missing (SynthTalk only).
  data.synthetic = ml_collections.ConfigDict(
      dict(enabled=True, seed=spec.seed,
           num_train_subjects=spec.num_train_subjects,
           num_unseen_subjects=spec.num_unseen_subjects,
           num_sentences=spec.num_sentences, min_seconds=spec.min_seconds,
           max_seconds=spec.max_seconds, vertex_spacing=spec.vertex_spacing))
  data.fps = spec.fps
  data.frame_stride = 1
  data.templates = "templates.pkl"
  data.template_mesh = "template.obj"
  # The template's size, checked against the mesh file when a corpus opens
  # (None: whatever the file holds; SynthTalk's depends on vertex_spacing).
  data.num_vertices = None
  data.num_faces = None
  data.regions = ml_collections.ConfigDict(dict(
      lips=["regions.json:lips"], eye=["regions.json:eye"],
      upper_face=["regions.json:upper_face"]))
  data.splits = ml_collections.ConfigDict(
      {name: dict(subjects=split["subjects"], sentences=split["sentences"])
       for name, split in spec.splits().items()})
  data.unseen_style = spec.train_subjects[0]
  # The audio input (data/audio.py). A pretrained speech encoder switches it to
  # the waveform (kind='waveform', normalize as its checkpoint says) when
  # training starts (models/speech/setup.py).
  data.features = ml_collections.ConfigDict(dict(
      kind="logmel", sample_rate=spec.sample_rate, feature_rate=100.0, win_length=400,
      n_fft=512, n_mels=80, fmin=40.0, fmax=7600.0, normalize=False))
  # A local Hugging Face wav2vec 2.0 / HuBERT folder, for model.audio_encoder='pretrained'.
  data.speech_checkpoint = ""
  data.cache_dir = ""  # '' = <root>/.feature_cache
  data.bucket_frames = (96, 128, 160, 192)
  data.max_length_mismatch_seconds = 0.5
  data.displacement_scale = 1e-3  # metres per model output unit
  return data


def size_for_accelerators(config: ml_collections.ConfigDict) -> None:
  """Batch, steps, model width and the all-vertex loss for a GPU/TPU run (in place)."""
  config.loss.vertex_every = 20
  # The all-vertex loss over 32 frames at a time under remat (bench/memory.py).
  config.loss.vertex_chunk_frames = 32
  config.sampler.num_points = 1024
  config.train.update(dict(global_batch_size=32, num_steps=50_000, learning_rate=1e-3,
                           warmup_steps=1000, eval_every=2000, log_every=100,
                           keep_checkpoints=3, steps_in_flight=2, host_memory_gib=0.0))
  config.model.update(dict(width=128, regressor_hidden=128, regressor_layers=2,
                           geometry_tokens=32, attention_window=256, token_window=256))
  config.eval.batch_size = 8


def use_pretrained_speech(config: ml_collections.ConfigDict, folder: str) -> None:
  """The published setting (in place): a pretrained wav2vec 2.0 / HuBERT at
  `folder`, hidden states 4, 8 and 12 into three fusion levels, its conv
  feature encoder frozen and its transformer fine-tuned at 1e-4."""
  config.data.speech_checkpoint = folder
  config.model.update(dict(audio_encoder="pretrained", audio_levels=3, speech_layers=(4, 8, 12),
                           freeze_feature_encoder=True, freeze_speech_transformer=False))
  config.train.learning_rate = 1e-4


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.data = synthtalk_data(SynthSpec(), root="data/synthtalk")
  # Reporting scales: metrics are printed times these (VOCASET's convention).
  config.model = ml_collections.ConfigDict(dict(
      width=64, audio_levels=3, conv_kernel=5, gcn_blocks=4, geometry_tokens=16,
      num_heads=4, attention_window=192, attention_block=64,
      # Frames the geometry tokens see around each block: the longest training
      # crop (max bucket_frames), so long inputs see what training saw.
      token_window=192, regressor_hidden=48,
      regressor_layers=1, regressor_heads=4, regressor_activation="relu", regressor_rank=32,
      uv_frequencies=6))
  # The speech encoder: 'logmel' (a small conv stack on log-mel frames) or
  # 'pretrained' (wav2vec 2.0 / HuBERT from data.speech_checkpoint, on the
  # waveform). speech_layers: the hidden state each fusion level takes (0 =
  # the first layer's input; () = evenly spaced up to the last layer). The
  # conv feature encoder is frozen as in the published models; the
  # transformer fine-tunes unless freeze_speech_transformer. Inputs longer than
  # speech_window_seconds are encoded in cross-faded windows (speech/levels.py).
  # speech_architecture is filled in from the checkpoint's config.json.
  config.model.update(dict(
      audio_encoder="logmel", speech_layers=(), freeze_feature_encoder=True,
      freeze_speech_transformer=False, speech_window_seconds=20.0,
      speech_overlap_seconds=4.0, speech_architecture=ml_collections.ConfigDict()))
  # Key motions (KMTalk; models/key_motion.py, docs/keymotion.md): 'none',
  # 'oracle' (the true displacement at key frames: an upper bound) or
  # 'predicted' (acquired from viseme, audio and style as key_rank fields).
  # Between key frames the guide is interpolated; it fades to zero over
  # key_fade_seconds outside them; the network sees the gaps to the nearest key
  # frames up to key_gap_seconds.
  config.model.update(dict(key_motion="none", key_rank=16, key_fade_seconds=0.2,
                           key_gap_seconds=0.5))
  # Where and how densely a training step supervises the surface
  # (models/sampler.py): K points from p = (1 - epsilon) q + epsilon p_area,
  # q = softmax(logits / temperature) ('learned') or p_area ('area'); the point
  # loss weighs errors by (p_area / p) ** alpha (1: unbiased area-uniform
  # objective; 0: the error where the points fall). See README, "Sampling".
  # seed picks the sample stream (sweep members get their index).
  config.sampler = ml_collections.ConfigDict(dict(
      num_points=256, temperature=1.0, epsilon=0.0, mode="learned", alpha=1.0, seed=0))
  # steps_in_flight: how far dispatch may run ahead of the device. On a CPU a
  # queued step already holds its working memory, so the default waits for
  # each step (training/trainer.py); accelerators keep 2 in flight.
  # host_memory_gib: a soft cap on the process heap under tcmalloc (0: none).
  # Whenever the heap holds more, its free pages go back to the kernel, so the
  # memory that the length buckets' differently sized temporaries fragment is
  # not kept (mmtalker_jax/allocator.py, docs/training.md). Configs that
  # change the model or mesh set their own, or 0.
  # points_per_row: each batch row draws its own K points (B x K distinct
  # points a step for the same compute) instead of all rows sharing K: on
  # SynthTalk it cut the test LVE 2.8x at 2000 steps (README, "Sampling").
  config.train = ml_collections.ConfigDict(dict(
      global_batch_size=8, num_steps=2000, learning_rate=2e-3,
      warmup_steps=100, end_lr_factor=0.05, weight_decay=1e-4, grad_clip=1.0,
      log_every=50, eval_every=400, keep_checkpoints=2, prefetch=2, points_per_row=True,
      steps_in_flight=1, host_memory_gib=2.25))
  config.eval = ml_collections.ConfigDict(dict(batch_size=4, render_sequences=3))
  # Decoding whole sequences (evaluation and predict.py): the memory budget of
  # one regressor call (its frame count follows from batch, points and width:
  # inference/decoder.py), and the multiple predict.py pads inputs to (each
  # padded length compiles once).
  config.decode = ml_collections.ConfigDict(dict(chunk_mib=256.0, length_bucket=64))
  # The plain all-vertex MSE joins every `vertex_every` steps (0: never). It costs
  # V/K times a sampled step and a second compile per bucket, so the CPU default
  # leaves it off; the accelerator configs turn it on.
  # vertex_chunk_frames > 0 computes it that many frames at a time under remat
  # (same value and gradient, memory of one chunk; 0: all frames at once).
  # point_chunk_frames > 0 decodes the sampled points that many frames at a
  # time under remat in the same way (models/forward.py: decode_in_chunks): a
  # default step's temporaries at 192 frames fall from 0.55 to 0.45 GiB at the
  # same steps/s (docs/benchmarks.md, "Host memory").
  # key_motion_weight: the acquisition loss at key frames (key_motion='predicted').
  config.loss = ml_collections.ConfigDict(dict(
      point_weight=1.0, velocity_weight=1.0, vertex_weight=1.0, vertex_every=0,
      vertex_chunk_frames=0, point_chunk_frames=32, key_motion_weight=1.0))
  config.scale = ml_collections.ConfigDict(dict(lve=1e5, eve=1e5, fdd=1e5, mve=1e3))
  return config
