"""``python -m thawline``."""

from thawline.cli import main

main()
