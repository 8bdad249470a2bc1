"""`python -m inferline.sim`: the same command as `inferline sim`."""

from inferline.sim.cli import app

app(prog_name="inferline sim")
