from lightning_summ.commands import main

main()
