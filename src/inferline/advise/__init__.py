"""`inferline advise`: the deployment decision matrix as a calculator (capacity from SIMULATED engines)."""
