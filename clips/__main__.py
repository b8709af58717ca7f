from clips.cli import main

main()
