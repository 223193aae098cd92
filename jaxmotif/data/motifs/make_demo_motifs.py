"""Regenerate ``demo_motifs.meme`` from the JASPAR 2024 DB bundled with pyjaspar (deterministic).

Usage: ``python -m jaxmotif.data.motifs.make_demo_motifs [output.meme]``
"""

import sys
from pathlib import Path

from jaxmotif.io.meme import write_meme
from jaxmotif.motifs import demo_motifs_from_jaspar


def main(argv: list[str]) -> None:
    out = Path(argv[0]) if argv else Path(__file__).with_name("demo_motifs.meme")
    motifs = demo_motifs_from_jaspar("JASPAR2024")
    write_meme(out, motifs)
    for motif in motifs:
        print(f"{motif.name}\t{motif.alt_name}\tw={motif.pwm.shape[0]}\tnsites={motif.nsites}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main(sys.argv[1:])
