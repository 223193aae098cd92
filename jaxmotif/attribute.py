"""Entry point of ``python -m jaxmotif.attribute``; the CLI is :mod:`jaxmotif.cli.attribute`.

The Python call is :func:`jaxmotif.attribute_regions` (:mod:`jaxmotif.scan`). This module is only
run, never imported by the package, so running it does not import it twice.
"""

import sys

if __name__ == "__main__":
    from jaxmotif.cli.attribute import main

    sys.exit(main())
