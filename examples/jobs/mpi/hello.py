"""MPI "hello world" for Batch AI jobs launched with OpenMPI's mpirun.

Each process that mpirun starts prints one line saying who it is,

    rank=R size=S local_rank=L node=N

and writes the same line to rank-R.txt, so that after the job one can check
that every rank ran, and on which node, by listing the output directory.

No mpi4py is needed: OpenMPI tells each process its place in the job through
environment variables, and that is all this check looks at.

Environment variables it reads:
  OMPI_COMM_WORLD_RANK        this process's rank in the job      (required)
  OMPI_COMM_WORLD_SIZE        the number of processes in the job  (required)
  OMPI_COMM_WORLD_LOCAL_RANK  its rank among those on this node   (required)
  AZ_BATCHAI_NODE_ID          the Batch AI node it runs on ("unknown" when unset)
  AZ_BATCHAI_OUTPUT_RESULTS   where rank-R.txt goes (falls back to the current directory)

Exit status: 0 on success, 2 when an OMPI variable is missing or not a valid
number (i.e. the script was not started by mpirun). Standard library only.
"""

import os
import sys

REQUIRED_VARS = ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK")


def read_ompi_env(env):
    """Return (rank, size, local_rank), or raise ValueError saying what is wrong."""
    missing = [name for name in REQUIRED_VARS if not env.get(name, "").strip()]
    if missing:
        raise ValueError("missing " + ", ".join(missing) + "; was this started by OpenMPI's mpirun?")
    values = []
    for name in REQUIRED_VARS:
        try:
            values.append(int(env[name]))
        except ValueError:
            raise ValueError(f"{name} must be an integer, got {env[name]!r}") from None
    rank, size, local_rank = values
    if size < 1 or not 0 <= rank < size or not 0 <= local_rank < size:
        raise ValueError(f"inconsistent values: rank={rank} size={size} local_rank={local_rank}")
    return rank, size, local_rank


def main():
    try:
        rank, size, local_rank = read_ompi_env(os.environ)
    except ValueError as e:
        print(f"hello: {e}", file=sys.stderr)
        return 2

    node = os.environ.get("AZ_BATCHAI_NODE_ID") or "unknown"
    line = f"rank={rank} size={size} local_rank={local_rank} node={node}"
    # flush: mpirun interleaves the output of all ranks, and an unflushed line
    # could otherwise surface late or out of order.
    print(line, flush=True)

    out_dir = os.environ.get("AZ_BATCHAI_OUTPUT_RESULTS") or "."
    # Every rank may get here at once; exist_ok makes the race harmless.
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, f"rank-{rank}.txt"), "w", encoding="utf-8") as f:
        f.write(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
