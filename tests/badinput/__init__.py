"""Bad inputs, killed runs, untrusted files: the reliability and safety corpus.

Every test makes its own files (tmp dirs) and asserts the exact outcome: a
one-line error naming the file and the problem with exit code 2, or a
warning naming the file and a skip with the run going on.
"""
