"""Writes the FaceFormer parity fixtures with the official code (needs torch).

  pip install torch==2.13.0 'transformers<5'
  git clone https://github.com/EvelynFan/FaceFormer /path/to/FaceFormer
  python tools/make_faceformer_fixtures.py --faceformer /path/to/FaceFormer \
      [--out tests/fixtures/faceformer]

For each layout (VOCASET: interpolated audio, one state per frame; BIWI: two
per frame), a small official `Faceformer` is built around a randomly
initialised wav2vec 2.0 of the base architecture's conv strides (320x, 50 Hz)
but narrow widths, then every weight is perturbed (so the zero-initialised
output map and the LayerNorms do something). It is saved with
`torch.save(model.state_dict())` as `<layout>.pth`, beside `<layout>.npz`:
the waveform, template, subject and true vertices fed to it, the official
teacher-forced forward's output (`forward(..., teacher_forcing=True)`, read
off its output map) and the official `predict` output. `<layout>.json` holds
the sizes. tests/test_faceformer.py loads them without torch.
"""

import argparse
import json
import os
import sys

import numpy as np

SPEECH = dict(conv_dim=(16,) * 7, conv_kernel=(10, 3, 3, 3, 3, 2, 2),
              conv_stride=(5, 2, 2, 2, 2, 2, 2), hidden_size=32, num_hidden_layers=2,
              num_attention_heads=4, intermediate_size=64, num_conv_pos_embeddings=16,
              num_conv_pos_embedding_groups=4, feat_extract_norm="group", conv_bias=False,
              do_stable_layer_norm=False)
# layout -> (dataset, width, period, vertices, subjects, seconds of audio, true frames)
LAYOUTS = {"vocaset": ("vocaset", 16, 4, 30, 3, 1.23, 33),
           "biwi": ("BIWI", 24, 3, 25, 4, 1.05, 24)}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--faceformer", required=True, help="a checkout of EvelynFan/FaceFormer")
  parser.add_argument("--out", default="tests/fixtures/faceformer")
  args = parser.parse_args()
  sys.path.insert(0, os.path.abspath(args.faceformer))
  import torch
  import transformers
  from transformers.models.wav2vec2 import modeling_wav2vec2

  import faceformer as official  # the upstream faceformer.py

  # Newer transformers return (projected, normed) from the feature projection;
  # the official forward (written against 4.6) expects the projected states.
  projection = modeling_wav2vec2.Wav2Vec2FeatureProjection.forward
  modeling_wav2vec2.Wav2Vec2FeatureProjection.forward = lambda self, x: projection(self, x)[0]

  os.makedirs(args.out, exist_ok=True)
  for layout, (dataset, width, period, verts, subjects, seconds, frames) in LAYOUTS.items():
    torch.manual_seed(0)
    rng = np.random.default_rng(1)
    config = transformers.Wav2Vec2Config(**SPEECH, attn_implementation="eager")
    official.Wav2Vec2Model.from_pretrained = classmethod(
        lambda cls, name: cls(config))  # noqa: ARG005 (no download: a random encoder)
    settings = argparse.Namespace(dataset=dataset, feature_dim=width, vertice_dim=3 * verts,
                                  period=period, device="cpu",
                                  train_subjects=" ".join(f"S{i}" for i in range(subjects)))
    model = official.Faceformer(settings)
    model.audio_feature_map = torch.nn.Linear(SPEECH["hidden_size"], width)
    with torch.no_grad():
      for p in model.parameters():
        p.add_(torch.randn_like(p) * 0.1)
    model.eval()
    path = os.path.join(args.out, f"{layout}.pth")
    torch.save(model.state_dict(), path)

    wave = (0.3 * np.sin(np.linspace(0, 90, int(seconds * 16000)))
            + 0.1 * rng.standard_normal(int(seconds * 16000))).astype(np.float32)
    normalised = ((wave - wave.mean()) / np.sqrt(wave.var() + 1e-7)).astype(np.float32)
    template = rng.standard_normal((verts, 3)).astype(np.float32)
    truth = (template[None] + 0.05 * rng.standard_normal((frames, verts, 3))).astype(np.float32)
    subject = subjects - 1
    one_hot = torch.eye(subjects)[subject][None]
    audio = torch.from_numpy(normalised)[None]
    tmpl = torch.from_numpy(template.reshape(1, -1))

    captured = []
    hook = model.vertice_map_r.register_forward_hook(lambda m, i, o: captured.append(o))
    with torch.no_grad():
      model(audio, tmpl, torch.from_numpy(truth.reshape(1, frames, -1)), one_hot,
            torch.nn.MSELoss(reduction="none"), teacher_forcing=True)
      hook.remove()
      teacher_forced = (captured[0] + tmpl[:, None]).numpy()[0].reshape(-1, verts, 3)
      predicted = model.predict(audio, tmpl, one_hot).numpy()[0].reshape(-1, verts, 3)
    np.savez(os.path.join(args.out, f"{layout}.npz"), wave=wave, template=template,
             subject=subject, truth=truth, teacher_forced=teacher_forced, predicted=predicted)
    with open(os.path.join(args.out, f"{layout}.json"), "w") as f:
      json.dump(dict(dataset=dataset, width=width, period=period, num_vertices=verts,
                     num_subjects=subjects, speech=SPEECH, torch=torch.__version__,
                     transformers=transformers.__version__), f, indent=1)
    print(f"{layout}: {os.path.getsize(path) / 1024:.0f} KiB state dict, teacher-forced "
          f"{teacher_forced.shape}, predicted {predicted.shape}")


if __name__ == "__main__":
  main()
