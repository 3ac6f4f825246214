from visiontk.cli import main

main()
