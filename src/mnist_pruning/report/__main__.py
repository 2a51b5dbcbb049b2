from mnist_pruning.report.write import main

main()
