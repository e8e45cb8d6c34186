"""`zoo bench`: time every built artifact that has a runtime here, record it, and pick one to deploy.

``measure`` times one (artifact, batch) point in windows until three agree; ``machine`` says which
machine the numbers belong to; ``worker`` is the child process that holds one runtime; ``runner``
finds the artifacts, bounds the batches by memory and records the results in each manifest; ``pick``
chooses by a named strategy among the artifacts that passed their checks.
"""
