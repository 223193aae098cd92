"""Entry point of ``python -m jaxmotif.mutmap``; the CLI is :mod:`jaxmotif.cli.mutmap`.

The function ``jaxmotif.mutation_map`` lives in :mod:`jaxmotif.ism`. This module is only run, never
imported by the package, so running it does not import it twice.
"""

import sys

if __name__ == "__main__":
    from jaxmotif.cli.mutmap import main

    sys.exit(main())
