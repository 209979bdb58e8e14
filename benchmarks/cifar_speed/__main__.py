from benchmarks.cifar_speed.cli import main

main()
