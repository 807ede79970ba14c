"""Lightning tasks: what is optimised and measured. One base task owns optimiser and schedule."""
