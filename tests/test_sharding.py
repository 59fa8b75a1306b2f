"""Data parallelism: one sharded VQ-VAE train step on 2 forced host devices equals the 1-device step."""

import json
import os
import subprocess
import sys
import textwrap

import jax.numpy as jnp
import pytest

from models.sharding import compute_dtype

TWO_DEVICE_SCRIPT = textwrap.dedent(
    """
    import json
    import jax, jax.numpy as jnp, numpy as np, optax
    from flax import nnx
    from models.quantizers import QuantizerConfig
    from models.sharding import data_mesh, replicate, shard_batch
    from models.vqvae import VQVAE, VQVAEConfig, tokenizer_loss

    assert len(jax.devices()) == 2, jax.devices()
    cfg = VQVAEConfig(embed_dim=8, encoder_channels=(4, 8), image_hw=(16, 16),
                      quantizer=QuantizerConfig(codebook_size=16))
    graphdef, params = nnx.split(VQVAE(cfg, rngs=nnx.Rngs(0)))
    optimizer = optax.adam(1e-2)
    frames = jax.random.uniform(jax.random.key(1), (4, 16, 16, 3))

    @jax.jit
    def train_step(params, opt_state, frames, key):
        def loss_fn(params):
            return tokenizer_loss(nnx.merge(graphdef, params), frames, key)
        (loss, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    results = {}
    for num_devices in (1, 2):
        mesh = data_mesh(jax.devices()[:num_devices])
        batch = shard_batch(frames, mesh)
        results[f"batch_devices_{num_devices}"] = len(batch.sharding.device_set)
        new_params, _, loss = train_step(replicate(params, mesh), replicate(optimizer.init(params), mesh),
                                         batch, jax.random.key(2))
        results[f"loss_{num_devices}"] = float(loss)
        results[f"params_{num_devices}"] = [np.asarray(x) for x in jax.tree.leaves(new_params)]
    results["max_param_diff"] = max(
        float(np.abs(a - b).max()) for a, b in zip(results.pop("params_1"), results.pop("params_2"))
    )
    try:
        shard_batch(frames[:3], data_mesh())
        results["odd_batch_error"] = None
    except ValueError as err:
        results["odd_batch_error"] = str(err)
    print("RESULT", json.dumps(results))
    """
)


def test_sharded_step_on_two_devices_matches_one():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run(
        [sys.executable, "-c", TWO_DEVICE_SCRIPT], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.split("RESULT", 1)[1])
    assert result["batch_devices_1"] == 1 and result["batch_devices_2"] == 2
    assert result["loss_2"] == pytest.approx(result["loss_1"], rel=1e-5, abs=1e-6)
    assert result["max_param_diff"] < 1e-5
    assert "batch size 3 does not split over 2 devices" in result["odd_batch_error"]


def test_compute_dtype_flag():
    assert compute_dtype("auto") == jnp.float32  # tests run on CPU
    assert compute_dtype("bfloat16") == jnp.bfloat16
    with pytest.raises(ValueError, match="compute dtype"):
        compute_dtype("fp16")
