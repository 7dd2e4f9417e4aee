"""`python -m service.cli`: the `latentdex` command without the installed script."""

from service.cli import main

main()
