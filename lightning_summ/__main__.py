from lightning_summ.cli import main

main()
