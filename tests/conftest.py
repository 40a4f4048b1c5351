"""Makes the modules in tests/ (service_process) importable from tests/charts and tests/cluster."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
