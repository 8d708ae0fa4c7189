import gc

gc.disable()  # until the CLI's start-up is over: see nemorun.cli.run
from nemorun.cli import run  # noqa: E402

run()
