"""The experiments layer, the top of mlpvae: the commands evaluate, analyze, bench,
reproduce, their reports and plots."""
