from storsync.cli import main

main()
