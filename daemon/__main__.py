from gex_alertd.cli import main

main()
