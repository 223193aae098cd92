"""Entry point of ``python -m jaxmotif.saliency``; the CLI is jaxmotif.cli.saliency.

The function ``jaxmotif.saliency`` lives in :mod:`jaxmotif.attribution`. This module is only run,
never imported by the package, so the package attribute ``jaxmotif.saliency`` stays the function.
"""

import sys

if __name__ == "__main__":
    from jaxmotif.cli.saliency import main

    sys.exit(main())
