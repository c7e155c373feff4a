"""Everything that runs: the run-folder stage shared by every entry point, and the runners."""
