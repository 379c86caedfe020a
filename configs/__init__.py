# Makes the built-in configs the package `seq2seq.configs` (src/seq2seq/configs is a link to
# this directory), so Hydra finds them through `pkg://seq2seq.configs` however seq2seq is
# installed: a wheel, `pip install .`, or an editable clone.
