"""The pretrained speech encoder's speed and memory at base size (random weights).

  python bench/speech.py [--seconds 10 60] [--repeats 3]

A wav2vec 2.0 base-sized encoder (7 convs of 512, 12 layers of 768, group
norm, post-LN; speed does not depend on the weights) is jitted on the CPU; per
audio length it prints the compile time, the best of --repeats warm forwards,
and XLA's compiled memory, and XLA's FLOPs per forward against this machine's
measured fp32 matmul rate: the shortest time any fp32 implementation could
take here. Where torch and transformers are installed it times
transformers' Wav2Vec2Model of the same size in the same run (2 threads,
no_grad, output_hidden_states=True) and prints the ratio.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mmtalker_jax.allocator import reexec_with_tcmalloc  # noqa: E402

reexec_with_tcmalloc()  # as train.py/predict.py run (mmtalker_jax/allocator.py)


def best_of(fn, repeats: int) -> float:
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return min(times)


def matmul_rate(jax, jnp, repeats: int) -> float:
  """FLOP/s of a jitted 2048 x 2048 fp32 matmul, best of `repeats`."""
  a = jnp.ones((2048, 2048), jnp.float32)
  f = jax.jit(lambda x: x @ x)
  jax.block_until_ready(f(a))
  return 2 * 2048 ** 3 / best_of(lambda: jax.block_until_ready(f(a)), max(repeats, 3))


def torch_forward(seconds_list, repeats):
  """{seconds: best forward time} of transformers' model, or None without torch."""
  try:
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2Model
  except ImportError:
    return None
  torch.set_num_threads(2)
  model = Wav2Vec2Model(Wav2Vec2Config()).eval()
  out = {}
  for seconds in seconds_list:
    wave = torch.randn(1, int(seconds * 16000))
    with torch.no_grad():
      model(wave, output_hidden_states=True)
      out[seconds] = best_of(lambda: model(wave, output_hidden_states=True), repeats)
  return out


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--seconds", type=float, nargs="+", default=[10.0, 60.0])
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args()

  import jax
  import jax.numpy as jnp
  import numpy as np

  from mmtalker_jax.models.speech import SpeechConfig, SpeechEncoder

  config = SpeechConfig()
  module = SpeechEncoder(config)
  params = jax.jit(module.init)(jax.random.key(0), jnp.zeros((1, 16000), jnp.float32))["params"]
  count = sum(x.size for x in jax.tree_util.tree_leaves(params))
  print(f"wav2vec 2.0 base size: {count / 1e6:.1f} M parameters, {jax.default_backend()}, "
        f"{jax.device_count()} device(s)")
  apply = jax.jit(lambda p, w: module.apply({"params": p}, w))
  peak = matmul_rate(jax, jnp, args.repeats)
  print(f"fp32 matmul, 2048^3, jit: {peak / 1e9:.0f} GFLOP/s on this machine")
  ours = {}
  for seconds in args.seconds:
    wave = jnp.asarray(np.random.default_rng(0).standard_normal((1, int(seconds * 16000))),
                       jnp.float32)
    start = time.perf_counter()
    compiled = apply.lower(params, wave).compile()
    compile_s = time.perf_counter() - start
    jax.block_until_ready(compiled(params, wave))
    ours[seconds] = best_of(lambda: jax.block_until_ready(compiled(params, wave)), args.repeats)
    mem = compiled.memory_analysis()
    cost = compiled.cost_analysis()
    flops = float((cost[0] if isinstance(cost, list) else cost).get("flops", 0.0))
    # XLA counts a scan's body once: add the attention's other key blocks.
    frames = config.num_frames(wave.shape[1])
    flops += (config.num_hidden_layers * (-(-frames // 256) - 1) * 4 * frames * 256
              * config.hidden_size)
    print(f"{seconds:5.0f} s audio ({config.num_frames(wave.shape[1])} frames): compile "
          f"{compile_s:.1f} s, forward {ours[seconds]:.2f} s ({seconds / ours[seconds]:.0f}x real "
          f"time), memory: temporaries {mem.temp_size_in_bytes / 2**20:.0f} MiB, arguments "
          f"{mem.argument_size_in_bytes / 2**20:.0f} MiB, outputs "
          f"{mem.output_size_in_bytes / 2**20:.0f} MiB; {flops / 1e9:.0f} GFLOP "
          f"(>= {flops / peak:.2f} s at the matmul rate)")
  reference = torch_forward(args.seconds, args.repeats)
  if reference is None:
    print("torch/transformers not installed: no side-by-side figure")
    return
  for seconds in args.seconds:
    print(f"{seconds:5.0f} s audio: transformers (PyTorch, 2 threads) {reference[seconds]:.2f} s "
          f"vs ours {ours[seconds]:.2f} s = {reference[seconds] / ours[seconds]:.2f}x faster")


if __name__ == "__main__":
  main()
