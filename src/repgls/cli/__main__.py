from repgls.cli import main

main()
