"""Shared fixtures: strict numerics, and PyTorch/jaxmotif model pairs with identical weights."""

import contextlib
import logging
import os

os.environ.setdefault("MPLBACKEND", "Agg")
# Many tests (and their subprocesses and notebook kernels, which inherit the variable) compile the
# same small programs: a persistent compilation cache shared by the run saves minutes on 2 cores.
os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR", os.path.join(os.path.dirname(os.path.dirname(__file__)), ".jax_cache")
)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")

import jax
import numpy as np
import pytest

# Strict numerics, as in equinox: an accidental broadcast of mismatched ranks is an error.
jax.config.update("jax_numpy_rank_promotion", "raise")

NARROW = (16, 24, 32)  # widths small enough for CPU tests, large enough to exercise every layer


def torch_pair(
    variant="full", seq_len=1000, widths=NARROW, hidden=40, outputs=None, activation="sigmoid", seed=0
):
    """(torch net in eval mode, converted jaxmotif Model) with random weights and BatchNorm stats."""
    import torch

    from convert import convert_state_dict
    from convert.torch_reference import NetDeepHistone, NetDeepHistoneDNA, randomize_batchnorm
    from jaxmotif.models.model import Model

    torch.manual_seed(seed)
    if variant == "full":
        net = NetDeepHistone(seq_len, widths, hidden, outputs or 7, activation)
    else:
        net = NetDeepHistoneDNA(seq_len, widths, hidden, outputs or 2, activation)
    randomize_batchnorm(net, seed=seed)
    net.eval()
    sd = {k: v.numpy() for k, v in net.state_dict().items()}
    config, params = convert_state_dict(sd, seq_len=seq_len, final_activation=activation)
    return net, Model.from_params(config, params)


def random_onehot(rng, n, length, n_frac=0.0):
    x = np.eye(4, dtype=np.float32)[rng.integers(0, 4, (n, length))]
    if n_frac:
        x[rng.random((n, length)) < n_frac] = 0.0
    return x


def torch_forward(net, seq, dnase=None):
    import torch

    with torch.no_grad():
        xt = torch.tensor(np.ascontiguousarray(seq.transpose(0, 2, 1)))  # transpose, never reshape
        if dnase is None:
            return net(xt).numpy()
        return net(xt, torch.tensor(dnase[:, None])).numpy()


@contextlib.contextmanager
def compile_messages():
    """The log messages of every XLA compilation inside the block (no-recompile tests)."""
    messages = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    logger = logging.getLogger("jax")
    logger.addHandler(handler)
    try:
        with jax.log_compiles():
            yield messages
    finally:
        logger.removeHandler(handler)


@pytest.fixture
def rng():
    return np.random.default_rng(0)
