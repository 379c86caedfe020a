"""The jobs a command runs, assembled from the floors below: a training run (`train`), a
trained run rebuilt from its checkpoint (`trained_run`), a seq2seq-generate job
(`generate`), checkpoint averaging (`average`), and the checks of a whole config that need
the task (`checks`). The CLI only parses and calls these."""
