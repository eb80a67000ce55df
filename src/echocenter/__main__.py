from echocenter.cli import main

main()
