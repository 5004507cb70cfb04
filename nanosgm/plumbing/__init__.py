"""What a learner may skip: atomic files, run locks, state checks, checkpoints, ``.npz`` reading, the
command lines' error reporting, and thread/BLAS settings. Nothing here imports the rest of nanosgm."""
