from echocenter_agent.cli import main

main()
