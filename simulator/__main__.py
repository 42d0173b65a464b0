"""``python -m simulator --port P --model NAME [...]``: run one simulated upstream."""

import sys

from simulator.server import main

sys.exit(main())
