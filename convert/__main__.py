"""python -m convert FILE OUT_DIR: a PyTorch / bpnet-lite / Keras checkpoint -> jaxmotif checkpoint."""

import argparse
import dataclasses
import sys
from pathlib import Path

from jaxmotif.cli.common import CliError, add_overwrite_arg, check_output, run_cli

ARCHITECTURES = ("deephistone", "bpnet", "chrombpnet", "basset", "deepsea", "beluga")
DEFAULT_BPNET_LENGTH = 2114  # bpnet-lite's and ENCODE's input length (the convolutions fit any L)

EXAMPLE = """\
examples:
  python -m convert model.pt ckpt/                         # DeepHistone state_dict (seq + DNase, L = 1000)
  python -m convert model.txt ckpt_dna/ --seq-len 500 --output-names names.txt
  python -m convert bpnet.final.torch ckpt_bpnet/          # bpnet-lite torch.save(model), read safely
  python -m convert chrombpnet.final.torch ckpt_cbp/       # bpnet-lite ChromBPNet
  python -m convert chrombpnet_nobias.h5 ckpt_cbp/ --bias bias.h5   # ENCODE ChromBPNet Keras pair
  python -m convert deepsea_cpu.pth ckpt_deepsea/          # kipoi DeepSEA (AGCT, folded to ACGT)
  python -m convert deepsea.beluga.pth ckpt_beluga/        # ExPecto Beluga (AGCT)
  python -m convert pretrained_model_reloaded_th.pth ckpt_basset/   # kipoi Basset

The architecture is read from the keys (--arch to force); sizes are read from the tensors and
checked against each other and against any hyperparameters a pickled module records. No code in
any file is run: state_dicts and bpnet-lite modules go through a restricted unpickler, .safetensors
through safetensors, Keras .h5 through h5py. Converted models always read ACGT one-hot: a
checkpoint trained on another order (--alphabet, AGCT for DeepSEA and Beluga by default) has it
folded into its first convolution. Load the result with jaxmotif.load_model(OUT_DIR).
"""


def _output_names(values):
    """``--output-names FILE`` (one name per line) or the names themselves."""
    if not values:
        return None
    if len(values) == 1 and Path(values[0]).is_file():
        names = [line.strip() for line in Path(values[0]).read_text().splitlines() if line.strip()]
        if not names:
            raise CliError(f"--output-names {values[0]}: the file names no output")
    else:
        names = list(values)
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:  # kipoi's DeepSEA list repeats some: a name then means its first output
        shown = ", ".join(repeated[:5]) + (", ..." if len(repeated) > 5 else "")
        print(
            f"warning: --output-names repeats {len(repeated)} name(s) ({shown}); by name, the first "
            "output of each is meant (use indices for the others)",
            file=sys.stderr,
        )
    return names


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m convert",
        description="Convert a DeepHistone, BPNet, ChromBPNet, Basset, DeepSEA or Beluga checkpoint "
        "into a jaxmotif checkpoint (Orbax + config).",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", help=".pt/.pth/.bin/.txt/.torch (torch.save), .safetensors, or a Keras .h5")
    p.add_argument("out_dir", help="checkpoint folder to write (refused if it exists, see --overwrite)")
    p.add_argument("--arch", choices=ARCHITECTURES, help="architecture (default: read from the keys)")
    p.add_argument("--bias", metavar="BIAS.h5", help="the bias model of an ENCODE ChromBPNet Keras pair")
    p.add_argument("--seq-len", type=int, default=None, help="window length L (default: from the shapes)")
    p.add_argument(
        "--trimming", type=int, default=None, help="a BPNet state_dict's trimming (default 47 + sum 2^i)"
    )
    p.add_argument("--final-activation", default=None, help="sigmoid (default), none; softmax (DeepHistone)")
    p.add_argument(
        "--alphabet",
        default=None,
        help="one-hot order the checkpoint was trained on (default ACGT; AGCT for DeepSEA and Beluga)",
    )
    p.add_argument(
        "--output-names", nargs="+", default=None, metavar="FILE|NAME", help="a file with one name per line"
    )
    add_overwrite_arg(p)
    args = p.parse_args(argv)

    def body():
        from convert.readers import ConversionError

        # the output policy is settled before the (possibly large) checkpoint is read
        check_output(args.out_dir, args.overwrite, flag="OUT_DIR")
        names = _output_names(args.output_names)
        try:
            summary = convert_path(
                args.file,
                args.out_dir,
                arch=args.arch,
                bias=args.bias,
                seq_len=args.seq_len,
                trimming=args.trimming,
                final_activation=args.final_activation,
                alphabet=args.alphabet,
                output_names=names,
                overwrite=args.overwrite,
            )
        except ConversionError as e:
            raise CliError(str(e)) from None
        print(f"wrote {args.out_dir}: {summary}")

    from jaxmotif.models.checkpoint import CheckpointError

    return run_cli(body, catch=(CheckpointError, ValueError))


def convert_path(
    path,
    out_dir,
    *,
    arch=None,
    bias=None,
    seq_len=None,
    trimming=None,
    final_activation=None,
    alphabet=None,
    output_names=None,
    overwrite=False,
) -> str:
    """Reads ``path``, detects and checks the architecture, converts and writes; returns a summary line."""
    from convert.detect import bpnet_family_hyperparameters, detect_arch, model_keys, unwrap_module
    from convert.readers import ConversionError, read_checkpoint

    ck = read_checkpoint(path, bias=bias)
    if ck.source != "module":  # DataParallel's "module.", Lightning's "model.", kipoi's "2.", ...
        ck.tensors, left_out = model_keys(ck.tensors, arch)
        if left_out:
            shown = ", ".join(left_out[:4]) + (", ..." if len(left_out) > 4 else "")
            print(f"warning: {len(left_out)} key(s) outside the model left out: {shown}", file=sys.stderr)
    ck = unwrap_module(ck)  # bpnet-lite's ControlWrapper / ProfileWrapper / CountWrapper
    arch = arch or detect_arch(ck)
    if trimming is not None and arch != "bpnet":
        raise ConversionError(f"--trimming is for BPNet checkpoints, not {arch}")
    if arch == "deephistone":
        from convert.convert import convert_state_dict
        from jaxmotif.models.checkpoint import write_checkpoint

        options = {"seq_len": seq_len, "alphabet": alphabet or "ACGT", "output_names": output_names}
        if final_activation:
            options["final_activation"] = final_activation
        config, params = convert_state_dict(ck.tensors, **options)
        write_checkpoint(out_dir, config, params, overwrite=overwrite)
        return (
            f"DeepHistone {config.variant}, L = {config.seq_len}, widths {config.widths}, "
            f"hidden {config.hidden}, outputs {list(config.output_names)} ({config.final_activation})"
        )
    from jaxmotif.models.checkpoint import write_checkpoint

    if arch in ("bpnet", "chrombpnet"):
        if final_activation:
            raise ConversionError(f"--final-activation: a {arch} returns logits and log-counts")
        if output_names:
            raise ConversionError(f"--output-names: a {arch} has the fixed outputs profile and counts")
        if alphabet and alphabet.upper() != "ACGT":
            raise ConversionError(f"--alphabet {alphabet}: bpnet-lite models read ACGT")
        hyper = bpnet_family_hyperparameters(ck, arch, trimming=trimming)
        config, params = bpnet_family_params(ck.tensors, arch, hyper, seq_len=seq_len)
        write_checkpoint(out_dir, config, params, overwrite=overwrite)
        return f"{arch} ({_describe(hyper)}), L = {config.seq_len} -> {config.out_len}"
    from convert.classic import convert_classic, model_config

    sizes, params = convert_classic(
        ck.tensors, arch, seq_len=seq_len, alphabet=alphabet, output_names=output_names
    )
    config = model_config(sizes)
    if final_activation:
        config = dataclasses.replace(config, final_activation=final_activation)
    write_checkpoint(out_dir, config, params, overwrite=overwrite)
    return (
        f"{arch}, L = {sizes.seq_len}, widths {sizes.widths}, hidden {sizes.hidden}, "
        f"{sizes.num_outputs} outputs"
        + (f", one-hot {sizes.source_alphabet} folded to ACGT" if sizes.source_alphabet != "ACGT" else "")
    )


def bpnet_family_params(tensors: dict, arch: str, hyper: dict, *, seq_len: int | None = None):
    """(config, params) of a checked bpnet-lite BPNet / ChromBPNet state_dict (key maps: convert.bpnet)."""
    from convert.bpnet import bpnet_params, chrombpnet_params
    from convert.readers import ConversionError
    from jaxmotif.models.bpnet import BPNetConfig, ChromBPNetConfig

    def config_of(h: dict, prefix: str) -> BPNetConfig:
        length = seq_len or DEFAULT_BPNET_LENGTH
        if length <= 2 * h["trimming"]:  # e.g. 9+ dilated layers at the default trimming and L = 2114
            raise ConversionError(
                f"{prefix}trimming = {h['trimming']} ({h['n_layers']} layers) leaves no profile from "
                f"L = {length}: pass --seq-len (at least {2 * h['trimming'] + 1})"
                + (" or the --trimming it was trained with" if h.get("trimming_from") == "default" else "")
            )
        return BPNetConfig(
            seq_len=length,
            n_filters=h["n_filters"],
            n_layers=h["n_layers"],
            n_outputs=h["n_outputs"],
            n_control_tracks=h["n_control_tracks"],
            trimming=h["trimming"],
            profile_output_bias=f"{prefix}fconv.bias" in tensors,
            count_output_bias=f"{prefix}linear.bias" in tensors,
        )

    if arch == "bpnet":
        config = config_of(hyper[""], "")
        return config, bpnet_params(tensors, config)
    parts = {part: config_of(hyper[part], f"{part}.") for part in ("bias", "accessibility")}
    config = ChromBPNetConfig(**parts)
    return config, chrombpnet_params(tensors, config)


SHOWN_HYPER = ("n_filters", "n_layers", "n_control_tracks", "trimming")


def _describe(hyper: dict) -> str:
    return "; ".join(
        (f"{part}: " if part else "") + ", ".join(f"{k} {v}" for k, v in h.items() if k in SHOWN_HYPER)
        for part, h in hyper.items()
    )


if __name__ == "__main__":
    sys.exit(main())
