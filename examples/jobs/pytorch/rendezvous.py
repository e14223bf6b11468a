"""Distributed rendezvous check for PyTorch-style Batch AI jobs, without PyTorch.

A PyTorch job on Batch AI gets the same environment variables that
torch.distributed's "env://" initialisation reads. This script checks that the
platform set them up correctly and that every rank can reach rank 0, doing by
hand, with plain TCP sockets, what torch would do when it starts:

  * rank 0 listens on MASTER_ADDR:MASTER_PORT and waits for the other
    WORLD_SIZE - 1 ranks to connect;
  * every other rank connects (retrying for up to 60 s, since rank 0 may start
    later) and sends one JSON line: its rank, world size, hostname and node id;
  * rank 0 checks it heard from every rank 1..WORLD_SIZE-1 exactly once, then
    sends every peer the full roster (an all-gather);
  * each peer checks the roster holds WORLD_SIZE distinct ranks, itself included.

Nothing waits forever: every socket operation has a timeout of about 60 s, so a
rank that never shows up fails the job within a minute or two, with the missing
ranks named, instead of leaving it hanging.

Environment variables it reads:
  RANK, WORLD_SIZE, LOCAL_RANK,     required; set by the platform for every
  MASTER_ADDR, MASTER_PORT          process of the job, as for torch "env://"
  AZ_BATCHAI_NODE_ID                the node this process runs on (reported only)
  AZ_BATCHAI_OUTPUT_RESULTS         where each rank writes rank-<RANK>.json
                                    (falls back to the current directory)
  BATCHAI_METRICS_FILE              if set, rank 0 appends {"world_size": N} to it

Exit status: 0 when the rendezvous succeeds, 1 when it fails (the reason goes to
stderr), 2 when the environment is missing a variable or is inconsistent.
Standard library only; Python 3.9+.
"""

import json
import os
import socket
import sys
import time

TIMEOUT_S = 60.0          # limit on each socket operation, the connect retries and rank 0's gather
ROSTER_GRACE_S = 15.0     # extra wait for the roster beyond rank 0's own deadline (see join)
RETRY_INTERVAL_S = 0.5    # pause between connection attempts while rank 0 is not up yet
MAX_LINE_BYTES = 1 << 20  # a roster line is small; anything bigger is garbage, not a roster

REQUIRED_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


class ConfigError(Exception):
    """The environment is missing a variable or is inconsistent (exit 2)."""


class RendezvousError(Exception):
    """The rendezvous itself failed (exit 1)."""


def read_config(env):
    """Validate the rendezvous variables and return them as a dict."""
    missing = [name for name in REQUIRED_VARS if not env.get(name, "").strip()]
    if missing:
        raise ConfigError("missing environment variable(s): " + ", ".join(missing))

    def integer(name):
        try:
            return int(env[name])
        except ValueError:
            raise ConfigError(f"{name} must be an integer, got {env[name]!r}") from None

    rank, world_size, local_rank, port = (integer(n) for n in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT"))
    if world_size < 1:
        raise ConfigError(f"WORLD_SIZE must be at least 1, got {world_size}")
    if not 0 <= rank < world_size:
        raise ConfigError(f"RANK must be in [0, {world_size}) for WORLD_SIZE={world_size}, got {rank}")
    # A node never runs more processes than the whole job has, so a local rank
    # outside [0, WORLD_SIZE) means the variables came from different launches.
    if not 0 <= local_rank < world_size:
        raise ConfigError(f"LOCAL_RANK must be in [0, {world_size}) for WORLD_SIZE={world_size}, got {local_rank}")
    if not 1 <= port <= 65535:
        raise ConfigError(f"MASTER_PORT must be in [1, 65535], got {port}")
    return {
        "rank": rank,
        "world_size": world_size,
        "local_rank": local_rank,
        "master_addr": env["MASTER_ADDR"].strip(),
        "master_port": port,
        "hostname": socket.gethostname(),
        "node_id": env.get("AZ_BATCHAI_NODE_ID"),
    }


# --- line-oriented JSON over a socket -----------------------------------------

def send_json(sock, obj):
    sock.sendall(json.dumps(obj).encode("utf-8") + b"\n")


def recv_json(sock, who):
    """Read one newline-terminated JSON object from sock (which has a timeout set)."""
    buf = bytearray()
    while b"\n" not in buf:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            raise RendezvousError(f"timed out after {sock.gettimeout():.0f}s waiting for {who}") from None
        if not chunk:
            raise RendezvousError(f"{who} closed the connection before sending a full message")
        buf += chunk
        if len(buf) > MAX_LINE_BYTES:
            raise RendezvousError(f"message from {who} is over {MAX_LINE_BYTES} bytes")
    line = bytes(buf[:buf.index(b"\n")])
    try:
        obj = json.loads(line)
    except ValueError as e:
        raise RendezvousError(f"{who} sent malformed JSON: {e}") from None
    if not isinstance(obj, dict):
        raise RendezvousError(f"{who} sent {type(obj).__name__}, expected a JSON object")
    return obj


# --- rank 0 --------------------------------------------------------------------

def listen(addr, port, backlog):
    """Open the listening socket on addr:port (IPv4 or IPv6, whichever addr is)."""
    family, socktype, proto, _, sockaddr = socket.getaddrinfo(
        addr, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    server = socket.socket(family, socktype, proto)
    # Lets a rerun bind the port at once, even while the previous run's
    # connections still sit in TIME_WAIT.
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        server.bind(sockaddr)
        server.listen(backlog)
    except OSError:
        server.close()
        raise
    server.settimeout(TIMEOUT_S)
    return server


def serve(cfg):
    """Rank 0: gather every peer's hello, check it, and send back the roster."""
    world_size = cfg["world_size"]
    me = {"rank": 0, "hostname": cfg["hostname"], "node_id": cfg["node_id"]}
    if world_size == 1:
        return [me]  # nobody to wait for

    peers = {}   # rank -> hello, for the ranks checked in so far
    conns = {}   # rank -> socket, kept open to send the roster back on
    server = listen(cfg["master_addr"], cfg["master_port"], world_size)
    print(f"rank 0: listening on {cfg['master_addr']}:{cfg['master_port']} "
          f"for {world_size - 1} peer(s)", flush=True)
    # One deadline for the whole gather rather than TIMEOUT_S per step: peers
    # that have checked in are waiting for the roster, and must hear from rank 0
    # (roster or error) before their own wait for it runs out.
    deadline = time.monotonic() + TIMEOUT_S
    try:
        # Accept exactly WORLD_SIZE - 1 connections. A rank that connects twice
        # (say, two processes given the same RANK) takes up a slot, and is then
        # caught as a duplicate below.
        for _ in range(world_size - 1):
            remaining = deadline - time.monotonic()
            try:
                if remaining <= 0:
                    raise socket.timeout
                server.settimeout(remaining)
                conn, peer_addr = server.accept()
            except socket.timeout:
                missing = sorted(set(range(1, world_size)) - set(peers))
                raise RendezvousError(f"timed out after {TIMEOUT_S:.0f}s waiting for rank(s) {missing}") from None
            who = f"peer at {peer_addr[0]}:{peer_addr[1]}"
            try:
                conn.settimeout(max(deadline - time.monotonic(), 1.0))
                hello = recv_json(conn, who)
                rank = hello.get("rank")
                # type() rather than isinstance(): a JSON true is a bool, an int
                # subclass, and is not a rank.
                if type(rank) is not int or not 1 <= rank < world_size:
                    raise RendezvousError(f"{who} claims rank {rank!r}, expected one of 1..{world_size - 1}")
                if rank in peers:
                    raise RendezvousError(f"rank {rank} connected twice (the second time from {who})")
                if hello.get("world_size") != world_size:
                    raise RendezvousError(
                        f"rank {rank} has WORLD_SIZE={hello.get('world_size')!r}, rank 0 has {world_size}")
            except Exception as e:
                # This peer is not in conns yet; tell it why before hanging up.
                notify(conn, e)
                conn.close()
                raise
            peers[rank], conns[rank] = hello, conn
            print(f"rank 0: rank {rank} checked in from {hello.get('hostname')} "
                  f"(node {hello.get('node_id')})", flush=True)

        roster = [me] + [{"rank": r, "hostname": h.get("hostname"), "node_id": h.get("node_id")}
                         for r, h in sorted(peers.items())]
        for rank, conn in sorted(conns.items()):
            try:
                conn.settimeout(TIMEOUT_S)
                send_json(conn, {"roster": roster})
            except OSError as e:
                raise RendezvousError(f"could not send the roster to rank {rank}: {e}") from None
        return roster
    except Exception as e:
        # Tell every peer already checked in why it failed, so it stops at once
        # with the real reason instead of waiting for a roster that never comes.
        for conn in conns.values():
            notify(conn, e)
        raise
    finally:
        for conn in conns.values():
            conn.close()
        server.close()


def notify(conn, error):
    """Best effort: send a peer the reason rank 0 is giving up."""
    try:
        conn.settimeout(5.0)  # short: a peer that does not read must not hold up the exit
        send_json(conn, {"error": f"rank 0: {error}"})
    except OSError:
        pass


# --- ranks 1..WORLD_SIZE-1 --------------------------------------------------------

def connect(addr, port):
    """Connect to rank 0, retrying until TIMEOUT_S has passed: it may not be listening yet."""
    deadline = time.monotonic() + TIMEOUT_S
    attempts = 0
    while True:
        attempts += 1
        remaining = deadline - time.monotonic()
        try:
            return socket.create_connection((addr, port), timeout=max(1.0, remaining))
        except OSError as e:
            # Refused, unreachable, name not resolvable yet: all can be transient
            # while the nodes of a job come up, so keep trying until the deadline.
            if time.monotonic() + RETRY_INTERVAL_S >= deadline:
                raise RendezvousError(
                    f"could not connect to rank 0 at {addr}:{port} after {attempts} "
                    f"attempt(s) over {TIMEOUT_S:.0f}s: {e}") from None
            time.sleep(RETRY_INTERVAL_S)


def join(cfg):
    """Ranks 1..WORLD_SIZE-1: check in with rank 0 and receive the roster."""
    world_size = cfg["world_size"]
    sock = connect(cfg["master_addr"], cfg["master_port"])
    with sock:
        sock.settimeout(TIMEOUT_S)
        send_json(sock, {"rank": cfg["rank"], "world_size": world_size,
                         "hostname": cfg["hostname"], "node_id": cfg["node_id"]})
        # Rank 0 may still be gathering the other ranks for up to TIMEOUT_S after
        # this one checked in; wait a bit longer than that, so that if it gives
        # up, its reason arrives here before this rank gives up on its own.
        sock.settimeout(TIMEOUT_S + ROSTER_GRACE_S)
        reply = recv_json(sock, "the roster from rank 0")
    if "error" in reply:
        raise RendezvousError(str(reply["error"]))
    roster = reply.get("roster")
    if not isinstance(roster, list) or not all(isinstance(e, dict) for e in roster):
        raise RendezvousError(f"rank 0 sent no usable roster: {reply!r}")
    ranks = [e.get("rank") for e in roster]
    # Exactly WORLD_SIZE entries whose ranks are 0..WORLD_SIZE-1, each once (so
    # this rank is in it too). The type check keeps 1.0 or true from passing as 1.
    if (len(ranks) != world_size or not all(type(r) is int for r in ranks)
            or set(ranks) != set(range(world_size))):
        raise RendezvousError(f"roster ranks {ranks} are not {world_size} distinct ranks 0..{world_size - 1}")
    return roster


# --- output --------------------------------------------------------------------

def write_result(cfg, roster):
    out_dir = os.environ.get("AZ_BATCHAI_OUTPUT_RESULTS") or "."
    os.makedirs(out_dir, exist_ok=True)
    view = {key: cfg[key] for key in ("rank", "world_size", "local_rank", "hostname", "node_id")}
    view["roster"] = roster
    path = os.path.join(out_dir, f"rank-{cfg['rank']}.json")
    # Write, then rename: anyone watching the (possibly shared) directory sees
    # either no file or a complete one, never half of it.
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(view, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)
    return path


def main():
    try:
        cfg = read_config(os.environ)
    except ConfigError as e:
        print(f"rendezvous: bad environment: {e}", file=sys.stderr)
        return 2

    rank, world_size = cfg["rank"], cfg["world_size"]
    try:
        roster = serve(cfg) if rank == 0 else join(cfg)
        path = write_result(cfg, roster)
        if rank == 0 and os.environ.get("BATCHAI_METRICS_FILE"):
            with open(os.environ["BATCHAI_METRICS_FILE"], "a", encoding="utf-8") as f:
                f.write(json.dumps({"world_size": world_size}) + "\n")
    except (RendezvousError, OSError) as e:
        print(f"rendezvous failed on rank {rank}/{world_size}: {e}", file=sys.stderr)
        return 1

    print(f"rank {rank}/{world_size}: rendezvous ok with {len(roster)} rank(s); wrote {path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
