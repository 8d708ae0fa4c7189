from nemorun.cli import main

main()
