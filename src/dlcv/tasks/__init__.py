"""Lightning tasks: what each kind of run optimises and measures; one base task owns optimiser and schedule."""
