"""benchmarks.deviceless: the traffic counter read from HLO text, and the deviceless GPU compile."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

from benchmarks.deviceless import array_bytes, program_traffic

# A hand-written optimized module with each case the counter distinguishes: a fusion, a library
# call returning (result, workspace), tuple elements (free), an in-place dynamic-update-slice
# fusion, and a while loop with a known trip count whose body holds one fusion.
MODULE = """HloModule m, is_scheduled=true

%fused_add (p0: f32[100], p1: f32[100]) -> f32[100] {
  %p0 = f32[100]{0} parameter(0)
  %p1 = f32[100]{0} parameter(1)
  ROOT %add = f32[100]{0} add(%p0, %p1)
}

%fused_dus (b: f32[1000], u: f32[10], i: s32[]) -> f32[1000] {
  %b = f32[1000]{0} parameter(0)
  %u = f32[10]{0} parameter(1)
  %i = s32[] parameter(2)
  ROOT %dus = f32[1000]{0} dynamic-update-slice(%b, %u, %i)
}

%body (t: (s32[], f32[100])) -> (s32[], f32[100]) {
  %t = (s32[], f32[100]{0}) parameter(0)
  %x = f32[100]{0} get-tuple-element(%t), index=1
  %n = s32[] get-tuple-element(%t), index=0
  %twice = f32[100]{0} fusion(%x, %x), kind=kLoop, calls=%fused_add
  ROOT %r = (s32[], f32[100]{0}) tuple(%n, %twice)
}

%cond (t: (s32[], f32[100])) -> pred[] {
  %t = (s32[], f32[100]{0}) parameter(0)
  ROOT %c = pred[] constant(true)
}

ENTRY %main (a: f32[100], w: bf16[8,4], big: f32[1000], upd: f32[10]) -> f32[100] {
  %a = f32[100]{0} parameter(0)
  %w = bf16[8,4]{1,0} parameter(1)
  %big = f32[1000]{0} parameter(2)
  %upd = f32[10]{0} parameter(3)
  %zero = s32[] constant(0)
  %sum = f32[100]{0} fusion(%a, %a), kind=kLoop, calls=%fused_add
  %conv = (bf16[8,4]{1,0}, u8[4096]{0}) custom-call(%w), custom_call_target="__cudnn$convForward"
  %conv.0 = bf16[8,4]{1,0} get-tuple-element(%conv), index=0
  %placed = f32[1000]{0} fusion(%big, %upd, %zero), kind=kLoop, calls=%fused_dus
  %init = (s32[], f32[100]{0}) tuple(%zero, %sum)
  %loop = (s32[], f32[100]{0}) while(%init), condition=%cond, body=%body, backend_config={"known_trip_count":{"n":"7"}}
  ROOT %out = f32[100]{0} get-tuple-element(%loop), index=1
}
"""  # noqa: E501


def test_array_bytes_counts_every_array_and_can_drop_a_library_workspace():
    assert array_bytes("f32[256,1000,128]{2,1,0}") == 4 * 256 * 1000 * 128
    assert array_bytes("(bf16[8,4]{1,0}, s32[3]{0})") == 2 * 32 + 4 * 3
    assert array_bytes("(bf16[8,4]{1,0}, u8[4096]{0})", drop_workspace=True) == 2 * 32
    assert array_bytes("f32[]") == 4  # a scalar


def test_program_traffic_of_a_hand_written_module():
    t = program_traffic(MODULE)
    sum_bytes = 3 * 400  # two f32[100] operands read, one written
    conv_bytes = 64 + 64  # reads w, writes its bf16[8,4] result; the u8 workspace is not data
    dus_bytes = 40 + 4 + 40  # in place: update and index read, update written; not the f32[1000] buffer
    loop_bytes = 7 * 3 * 400  # the body's fusion, 7 trips
    assert t.bytes == sum_bytes + conv_bytes + dus_bytes + loop_bytes
    assert t.kernels == 1 + 1 + 1 + 7
    assert t.by_op["custom-call:__cudnn$convForward"] == conv_bytes
    assert t.by_op["fusion:kLoop"] == sum_bytes + dus_bytes + loop_bytes
    assert t.largest[0] == (loop_bytes, "twice", "fusion:kLoop")


def test_program_traffic_of_programs_xla_compiled_here():
    x = jnp.zeros(1000, jnp.float32)
    one = program_traffic(jax.jit(lambda v: jnp.sin(v) * 2).lower(x).compile().as_text())
    assert (one.bytes, one.kernels) == (8000, 1)  # one fusion: 4000 bytes in, 4000 out
    looped = program_traffic(
        jax.jit(lambda v: jax.lax.fori_loop(0, 5, lambda i, y: jnp.sin(y) * 2, v))
        .lower(x)
        .compile()
        .as_text()
    )
    # five trips of the same fusion, plus the loop counter's increments and the entry copies
    assert 5 * 8000 <= looped.bytes < 5 * 8000 + 2 * 8000 + 1000
    assert looped.by_op["fusion:kLoop"] >= 5 * 8000


def test_no_entry_is_an_error():
    with pytest.raises(ValueError, match="ENTRY"):
        program_traffic("HloModule empty\n")


def _has_cuda_plugin() -> bool:
    try:
        return importlib.util.find_spec("jax_plugins.xla_cuda12") is not None
    except ModuleNotFoundError:  # no jax_plugins namespace at all
        return False


@pytest.mark.skipif(not _has_cuda_plugin(), reason="needs jax[cuda12] (no GPU needed)")
def test_deviceless_compile_for_an_h200():  # pragma: no cover - optional CUDA plugin
    # in a fresh process: the CUDA plugin is set up (or not) when JAX first starts its backends
    script = """
import jax, jax.numpy as jnp
from benchmarks.deviceless import abstract_args, gpu_sharding, prepare, program_traffic
prepare()
sharding = gpu_sharding("h200")
x, w = jnp.zeros((4, 100, 16)), jnp.zeros((9, 16, 32))
conv = lambda a, b: jax.lax.conv_general_dilated(a, b, (1,), "SAME", dimension_numbers=("NWC", "WIO", "NWC"))
t = program_traffic(jax.jit(conv).lower(*abstract_args((x, w), sharding)).compile().as_text())
assert any(op.startswith("custom-call:__cudnn") for op in t.by_op), t.by_op
assert t.bytes >= 4 * (4 * 100 * 16 + 4 * 100 * 32), t.bytes
print("ok")
"""
    root = Path(__file__).resolve().parents[1]  # `benchmarks` is imported from the repository root
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=root
    )
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-2000:]


def test_unknown_gpu_target_is_named():
    from benchmarks.deviceless import gpu_sharding

    with pytest.raises(ValueError, match="'a100'"):
        gpu_sharding("a100")
