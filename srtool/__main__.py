from srtool.cli import main

main()
