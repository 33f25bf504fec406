"""`masquerade batch`: many files anonymized by a pool of Ray actors, resumably.

Ray (an existing distributed engine) does the scheduling, placement and failure
detection; nothing here is a scheduler, a queue or an RPC layer of its own. Without
`--address` (or RAY_ADDRESS) a local Ray runtime starts on this machine, so a batch
needs no cluster.

- `inputs`: SRC arguments (files, folders, globs, list files) -> inputs and their output
  paths, which mirror the input tree under OUTDIR.
- `manifest`: the JSON-lines job record in OUTDIR that makes a rerun resume.
- `workers`: the Ray actor that holds the networks and runs `run_file` per file.
- `job`: the driver loop: dispatch, retries, progress bar and the final table.
"""
