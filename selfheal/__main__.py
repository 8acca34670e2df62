from selfheal.cli import main

main()
