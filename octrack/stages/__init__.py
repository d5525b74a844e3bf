"""One module per subcommand: each wires config → sources → networks and engine → writers for its command.
`octrack.cli` parses the command line and calls one of them; nothing below imports this package."""
