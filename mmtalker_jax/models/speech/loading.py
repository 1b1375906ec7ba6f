"""Reading a local Hugging Face wav2vec 2.0 / HuBERT folder: config.json + model.safetensors.

No torch and no network: the weights are read with safetensors' Flax reader
and mapped onto `SpeechEncoder`'s parameter tree by name. Both spellings of
the positional convolution's weight norm load (`weight_g`/`weight_v`, as in the
released checkpoints, and `parametrizations.weight.original0/1`, as newer
transformers versions save). Keys the encoder does not use (a CTC head, the
quantizer, the masking embedding) are ignored; missing or mis-shaped ones are
named in the error.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mmtalker_jax import fileio
from mmtalker_jax.errors import InputError
from mmtalker_jax.models.speech.wav2vec2 import SpeechConfig, SpeechEncoder

_PREFIXES = ("wav2vec2.", "hubert.")

# checkpoint key -> (flax path, transform); transforms: "dense" [out,in] -> [in,out],
# "conv" [out,in,k] -> [k,in,out], "norm" (weight -> scale), "g" [1,1,k] -> [k].
_RULES = [
    (r"feature_extractor\.conv_layers\.(\d+)\.conv\.(weight|bias)",
     lambda m: (("feature_extractor", f"conv_layers_{m[1]}_conv"), m[2], "conv")),
    (r"feature_extractor\.conv_layers\.(\d+)\.layer_norm\.(weight|bias)",
     lambda m: (("feature_extractor", f"conv_layers_{m[1]}_layer_norm"), m[2], "norm")),
    (r"feature_projection\.layer_norm\.(weight|bias)",
     lambda m: (("feature_projection_layer_norm",), m[1], "norm")),
    (r"feature_projection\.projection\.(weight|bias)",
     lambda m: (("feature_projection_projection",), m[1], "dense")),
    (r"encoder\.pos_conv_embed\.conv\.(?:weight_g|parametrizations\.weight\.original0)",
     lambda m: (("encoder_pos_conv_embed_conv",), "weight_g", "g")),
    (r"encoder\.pos_conv_embed\.conv\.(?:weight_v|parametrizations\.weight\.original1)",
     lambda m: (("encoder_pos_conv_embed_conv",), "weight_v", "conv")),
    (r"encoder\.pos_conv_embed\.conv\.bias",
     lambda m: (("encoder_pos_conv_embed_conv",), "bias", "raw")),
    (r"encoder\.layer_norm\.(weight|bias)", lambda m: (("encoder_layer_norm",), m[1], "norm")),
    (r"encoder\.layers\.(\d+)\.attention\.(q|k|v|out)_proj\.(weight|bias)",
     lambda m: ((f"encoder_layers_{m[1]}", "attention", f"{m[2]}_proj"), m[3], "dense")),
    (r"encoder\.layers\.(\d+)\.(layer_norm|final_layer_norm)\.(weight|bias)",
     lambda m: ((f"encoder_layers_{m[1]}", m[2]), m[3], "norm")),
    (r"encoder\.layers\.(\d+)\.feed_forward\.(intermediate_dense|output_dense)\.(weight|bias)",
     lambda m: ((f"encoder_layers_{m[1]}", f"feed_forward_{m[2]}"), m[3], "dense")),
]


def speech_config(raw: dict, path: str = "") -> SpeechConfig:
  """SpeechConfig from a config.json dict (wav2vec2 or hubert).

  Raises:
    InputError: naming `path`, for a model type or option this encoder does not build.
  """
  kind = raw.get("model_type")
  if kind not in ("wav2vec2", "hubert"):
    raise InputError(path, f"model_type {kind!r} is not a wav2vec2 or hubert checkpoint")
  for field in ("feat_extract_activation", "hidden_act"):
    if raw.get(field, "gelu") != "gelu":
      raise InputError(path, f"{field}={raw[field]!r}: only 'gelu' is supported")
  if raw.get("conv_pos_batch_norm", False):
    raise InputError(path, "conv_pos_batch_norm=true is not supported")
  if raw.get("feat_extract_norm", "group") not in ("group", "layer"):
    raise InputError(path, f"feat_extract_norm={raw['feat_extract_norm']!r} is not group|layer")
  fields = {f.name for f in dataclasses.fields(SpeechConfig)}
  kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in raw.items() if k in fields}
  # wav2vec2's feature projection always normalises; HuBERT's by its config.
  kwargs["feat_proj_layer_norm"] = kind == "wav2vec2" or raw.get("feat_proj_layer_norm", True)
  return SpeechConfig(**kwargs)


def map_weights(tensors: dict[str, Any], config: SpeechConfig, folder: str = "") -> dict:
  """Checkpoint tensors -> SpeechEncoder params (float32).

  Raises:
    InputError: naming `folder` and the missing or mis-shaped parameters.
  """
  expected = jax.eval_shape(lambda: SpeechEncoder(config).init(
      jax.random.key(0), jnp.zeros((1, 4000), jnp.float32)))["params"]
  params: dict = {}
  wrong = []
  for key, value in tensors.items():
    name = key
    for prefix in _PREFIXES:
      name = name.removeprefix(prefix)
    for pattern, target in _RULES:
      m = re.fullmatch(pattern, name)
      if m:
        break
    else:
      continue  # a head, the quantizer, masked_spec_embed: not the encoder's
    path, leaf, kind = target(m)
    x = np.asarray(value, np.float32)
    if kind == "dense" and leaf == "weight":
      x, leaf = x.T, "kernel"
    elif kind == "conv" and leaf in ("weight", "weight_v"):
      x, leaf = x.transpose(2, 1, 0), "kernel" if leaf == "weight" else leaf
    elif kind == "norm" and leaf == "weight":
      leaf = "scale"
    elif kind == "g":
      x = x.reshape(-1)
    node = expected
    for p in (*path, leaf):
      node = node.get(p) if isinstance(node, dict) else None
    if node is None:
      continue  # e.g. a conv bias the config says is absent
    if tuple(node.shape) != x.shape:
      wrong.append(f"{key} {list(value.shape)} (expected {list(node.shape)})")
      continue
    target_dict = params
    for p in path:
      target_dict = target_dict.setdefault(p, {})
    target_dict[leaf] = jnp.asarray(x)
  missing = ["/".join(str(getattr(k, "key", k)) for k in p)
             for p, _ in jax.tree_util.tree_flatten_with_path(expected)[0]
             if _lookup(params, p) is None]
  if missing or wrong:
    parts = ([f"missing {len(missing)}: {', '.join(missing[:6])}"
              + (" ..." if len(missing) > 6 else "")] if missing else []) + (
        [f"mis-shaped: {', '.join(wrong[:4])}" + (" ..." if len(wrong) > 4 else "")]
        if wrong else [])
    raise InputError(folder, "checkpoint does not fit its config.json: " + "; ".join(parts))
  return params


def _lookup(tree: dict, path) -> Any:
  node = tree
  for k in path:
    key = getattr(k, "key", k)
    if not isinstance(node, dict) or key not in node:
      return None
    node = node[key]
  return node


def read_folder(folder: str) -> tuple[SpeechConfig, dict]:
  """(config, params) of a local Hugging Face wav2vec2/HuBERT folder.

  Raises:
    InputError: naming the folder or file, for anything missing, unreadable or
      mismatched; a `pytorch_model.bin`-only folder is told how to convert it.
  """
  folder = os.path.abspath(os.path.expanduser(folder))
  config_path = os.path.join(folder, "config.json")
  weights = os.path.join(folder, "model.safetensors")
  if not os.path.isdir(folder):
    raise InputError(folder, "speech checkpoint folder not found")
  if not os.path.isfile(config_path):
    raise InputError(folder, "holds no config.json (a Hugging Face model folder has one)")
  if not os.path.isfile(weights):
    if os.path.isfile(os.path.join(folder, "pytorch_model.bin")):
      raise InputError(folder, "holds pytorch_model.bin only; convert it once where torch is "
                       "installed: python -c \"from transformers import AutoModel; "
                       f"AutoModel.from_pretrained('{folder}').save_pretrained('{folder}', "
                       "safe_serialization=True)\"")
    raise InputError(folder, "holds no model.safetensors")
  config = speech_config(fileio.read_json(config_path), config_path)
  from safetensors.numpy import load_file

  try:
    tensors = load_file(weights)
  except Exception as e:  # noqa: BLE001 (safetensors raises several types)
    raise InputError(weights, f"not a readable safetensors file ({e})") from None
  return config, map_weights(tensors, config, folder)
