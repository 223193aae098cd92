"""Entry point of ``python -m jaxmotif.report``; the CLI is :mod:`jaxmotif.cli.report`.

The library is :mod:`jaxmotif.reporting` (``build_report``). This module is only run, never
imported by the package, so running it does not import it twice.
"""

import sys

if __name__ == "__main__":
    from jaxmotif.cli.report import main

    sys.exit(main())
