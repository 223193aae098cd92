"""Entry point of ``python -m jaxmotif.modisco``; the CLI is :mod:`jaxmotif.cli.modisco`.

The library is :mod:`jaxmotif.motif_discovery`. This module is only run, never imported by the
package, so running it does not import it twice.
"""

import sys

if __name__ == "__main__":
    from jaxmotif.cli.modisco import main

    sys.exit(main())
