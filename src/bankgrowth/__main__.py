from bankgrowth.cli.main import run

run()
