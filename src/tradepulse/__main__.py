"""``python -m tradepulse``."""

from tradepulse.cli import main

main()
