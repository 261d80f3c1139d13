from deployer.cli.app import main

main()
