from octrack.cli import entry_point

entry_point()
