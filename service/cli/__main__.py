"""`python -m latentdex.service.cli`: the `latentdex` command without the installed script."""

from latentdex.service.cli import main

main()
