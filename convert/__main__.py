"""python -m convert STATE_DICT OUT_DIR: a PyTorch DeepHistone state_dict -> jaxmotif checkpoint."""

import argparse
import sys

from jaxmotif.models.checkpoint import CheckpointError
from jaxmotif.models.deephistone import FINAL_ACTIVATIONS

EXAMPLE = """\
example:
  python -m convert model.pt ckpt/                       # published DeepHistone (seq + DNase, L = 1000)
  python -m convert model.txt ckpt_dna/ --seq-len 500 --output-names neg pos

The variant (two-branch or DNA-only), the widths and the number of outputs are read from the
tensors; L only where the Linear layer leaves it open (any L with L // 16 = W fits).
Files are read with torch.load(weights_only=True) or safetensors: no code in them is run.
Load the result with jaxmotif.load_model(OUT_DIR).
"""


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m convert",
        description="Convert a PyTorch DeepHistone state_dict into a jaxmotif checkpoint (Orbax + config).",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("state_dict", help=".pt/.pth/.txt/.bin (torch.save of a state_dict) or .safetensors")
    p.add_argument("out_dir", help="folder to write; must not exist or be empty (see --force)")
    p.add_argument("--seq-len", type=int, default=None, help="window length L (default: from the shapes)")
    p.add_argument("--final-activation", choices=FINAL_ACTIVATIONS, default="sigmoid")
    p.add_argument("--alphabet", default="ACGT", help="order of the one-hot rows the model was trained on")
    p.add_argument("--output-names", nargs="+", default=None, help="one name per output")
    p.add_argument("--force", action="store_true", help="replace an existing OUT_DIR")
    args = p.parse_args(argv)

    from convert.convert import ConversionError, convert_file

    try:
        config = convert_file(
            args.state_dict,
            args.out_dir,
            overwrite=args.force,
            seq_len=args.seq_len,
            final_activation=args.final_activation,
            alphabet=args.alphabet,
            output_names=args.output_names,
        )
    except (ConversionError, CheckpointError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(
        f"wrote {args.out_dir}: DeepHistone {config.variant}, L = {config.seq_len}, widths {config.widths}, "
        f"hidden {config.hidden}, outputs {list(config.output_names)} ({config.final_activation})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
