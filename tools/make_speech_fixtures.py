"""Writes the speech-encoder parity fixtures with transformers (needs torch).

  pip install torch==2.13.0 transformers==5.23.0
  python tools/make_speech_fixtures.py [--out tests/fixtures/speech]

For each variant, a small randomly initialised (then perturbed, so no
LayerNorm is the identity) transformers model is saved as a Hugging Face folder
(config.json + model.safetensors) beside reference.npz: a fixed [2, S] input
and what transformers computes for it with output_hidden_states=True (every
hidden state and last_hidden_state). tests/test_speech.py loads each folder with
mmtalker_jax.models.speech and compares, without torch.
"""

import argparse
import os

import numpy as np

SMALL = dict(conv_dim=(32, 32, 32, 32), conv_kernel=(10, 3, 3, 2), conv_stride=(5, 2, 2, 2),
             hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
             num_conv_pos_embedding_groups=4)

VARIANTS = {
    # base-model layout: group norm, post-LN; saved with the released checkpoints'
    # weight_g/weight_v spelling of the weight norm
    "wav2vec2_group_postln": ("wav2vec2", dict(feat_extract_norm="group", conv_bias=False,
                                               do_stable_layer_norm=False,
                                               num_conv_pos_embeddings=16), True),
    # large-lv60 layout: layer norm after every conv, conv biases, pre-LN
    "wav2vec2_layer_preln": ("wav2vec2", dict(feat_extract_norm="layer", conv_bias=True,
                                              do_stable_layer_norm=True,
                                              num_conv_pos_embeddings=15), False),
    "hubert_group_postln": ("hubert", dict(feat_extract_norm="group", conv_bias=False,
                                           do_stable_layer_norm=False,
                                           num_conv_pos_embeddings=16), False),
    "hubert_layer_preln_noprojnorm": ("hubert", dict(feat_extract_norm="layer", conv_bias=True,
                                                     do_stable_layer_norm=True,
                                                     feat_proj_layer_norm=False,
                                                     num_conv_pos_embeddings=16), True),
}


def make(name: str, kind: str, overrides: dict, old_weight_norm: bool, out: str) -> None:
  import torch
  from safetensors.numpy import load_file, save_file
  from transformers import HubertConfig, HubertModel, Wav2Vec2Config, Wav2Vec2Model

  torch.manual_seed(sum(map(ord, name)))
  cls_config, cls_model = ((Wav2Vec2Config, Wav2Vec2Model) if kind == "wav2vec2"
                           else (HubertConfig, HubertModel))
  config = cls_config(**SMALL, **overrides)
  model = cls_model(config).eval()
  with torch.no_grad():
    for p in model.parameters():
      p.add_(0.1 * torch.randn_like(p))
  folder = os.path.join(out, name)
  model.save_pretrained(folder, safe_serialization=True)
  if old_weight_norm:
    path = os.path.join(folder, "model.safetensors")
    tensors = load_file(path)
    renamed = {k.replace("parametrizations.weight.original0", "weight_g")
               .replace("parametrizations.weight.original1", "weight_v"): v
               for k, v in tensors.items()}
    assert renamed.keys() != tensors.keys(), "no parametrized weight norm to rename"
    save_file(renamed, path, metadata={"format": "pt"})
  rng = np.random.default_rng(0)
  wave = rng.standard_normal((2, 4000)).astype(np.float32)
  with torch.no_grad():
    out = model(torch.from_numpy(wave), output_hidden_states=True)
  states = out.hidden_states
  np.savez_compressed(os.path.join(folder, "reference.npz"), wave=wave,
                      last_hidden_state=out.last_hidden_state.numpy(),
                      **{f"hidden_{i}": s.numpy() for i, s in enumerate(states)})
  print(f"{name}: {len(states)} hidden states of {tuple(states[0].shape)}")


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--out", default=os.path.join("tests", "fixtures", "speech"))
  args = parser.parse_args()
  for name, (kind, overrides, old) in VARIANTS.items():
    make(name, kind, overrides, old, args.out)


if __name__ == "__main__":
  main()
