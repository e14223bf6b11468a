"""Training job for the quickstart: a tiny neural net on the "two moons" data set.

The quickstart submits this script as a Batch AI job. It needs nothing but the
Python 3.9+ standard library, so it runs on any node image, and it finishes in
a second or two, so the example stays quick.

What it does:
  * generates ~600 points of two interleaving half-moons from a fixed seed and
    splits them into a training and a test set;
  * trains a 2-layer neural net (tanh hidden layer, sigmoid output) with plain
    mini-batch gradient descent on the binary cross-entropy;
  * reports the test accuracy and writes the weights and the final metrics.

Everything is seeded, so two runs with the same arguments produce byte-for-byte
the same output files.

Batch AI environment variables it reads:
  AZ_BATCHAI_OUTPUT_MODEL  directory for model.json and metrics.json
                           (falls back to ./output when unset, e.g. when run by hand)
  BATCHAI_METRICS_FILE     if set, a file to append metrics to as JSON lines: one
                           line per epoch ({"epoch": 3, "loss": 0.41}) and a final
                           {"accuracy": ..., "loss": ...}; the platform keeps the
                           last value it sees of each numeric key.

Usage:
  python3 train.py [--epochs N] [--seed S] [--learning-rate X]
"""

import argparse
import json
import math
import os
import random
import sys

NUM_POINTS = 600      # total points, split evenly between the two moons
NOISE = 0.15          # std-dev of the Gaussian jitter added to every point
TEST_FRACTION = 0.2   # share of the points held out for the test set
HIDDEN_UNITS = 8      # enough to bend the decision boundary around the moons
BATCH_SIZE = 16


def make_moons(rng, n, noise):
    """Return n (x1, x2, label) points on two interleaving half-circles."""
    points = []
    for i in range(n):
        label = i % 2
        # Spread the angles evenly rather than randomly: the moons are then fully
        # covered even at this small size, and only the jitter is random.
        t = math.pi * (i // 2) / (n // 2 - 1)
        if label == 0:
            x1, x2 = math.cos(t), math.sin(t)
        else:
            x1, x2 = 1.0 - math.cos(t), 0.5 - math.sin(t)
        points.append((x1 + rng.gauss(0.0, noise), x2 + rng.gauss(0.0, noise), label))
    return points


def standardize(train, test):
    """Scale both features to zero mean and unit variance, using train statistics only."""
    stats = []
    for k in range(2):
        values = [p[k] for p in train]
        mean = sum(values) / len(values)
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values)) or 1.0
        stats.append((mean, std))

    def scale(points):
        return [((p[0] - stats[0][0]) / stats[0][1], (p[1] - stats[1][0]) / stats[1][1], p[2])
                for p in points]

    return scale(train), scale(test), stats


def sigmoid(z):
    # Branch on the sign so math.exp never overflows for large |z|.
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


class TinyNet:
    """2 inputs -> HIDDEN_UNITS tanh units -> 1 sigmoid output."""

    def __init__(self, rng, hidden):
        # Xavier-style initialisation: small enough that tanh starts in its
        # linear range, random enough to break the symmetry between units.
        scale = 1.0 / math.sqrt(2)
        self.w1 = [[rng.gauss(0.0, scale), rng.gauss(0.0, scale)] for _ in range(hidden)]
        self.b1 = [0.0] * hidden
        self.w2 = [rng.gauss(0.0, 1.0 / math.sqrt(hidden)) for _ in range(hidden)]
        self.b2 = 0.0

    def forward(self, x1, x2):
        """Return (hidden activations, output probability)."""
        h = [math.tanh(w[0] * x1 + w[1] * x2 + b) for w, b in zip(self.w1, self.b1)]
        z = sum(wi * hi for wi, hi in zip(self.w2, h)) + self.b2
        return h, sigmoid(z)

    def train_batch(self, batch, lr):
        """One gradient-descent step on a mini-batch; returns the summed loss."""
        n_hidden = len(self.w2)
        g_w1 = [[0.0, 0.0] for _ in range(n_hidden)]
        g_b1 = [0.0] * n_hidden
        g_w2 = [0.0] * n_hidden
        g_b2 = 0.0
        loss = 0.0
        for x1, x2, y in batch:
            h, p = self.forward(x1, x2)
            loss += cross_entropy(p, y)
            # For sigmoid + cross-entropy the output gradient collapses to p - y.
            d_out = p - y
            g_b2 += d_out
            for j in range(n_hidden):
                g_w2[j] += d_out * h[j]
                # Back through tanh: d tanh(a)/da = 1 - tanh(a)^2.
                d_h = d_out * self.w2[j] * (1.0 - h[j] * h[j])
                g_w1[j][0] += d_h * x1
                g_w1[j][1] += d_h * x2
                g_b1[j] += d_h
        step = lr / len(batch)
        for j in range(n_hidden):
            self.w1[j][0] -= step * g_w1[j][0]
            self.w1[j][1] -= step * g_w1[j][1]
            self.b1[j] -= step * g_b1[j]
            self.w2[j] -= step * g_w2[j]
        self.b2 -= step * g_b2
        return loss

    def to_dict(self):
        return {"w1": self.w1, "b1": self.b1, "w2": self.w2, "b2": self.b2}


def cross_entropy(p, y):
    # Clamp so a confident wrong prediction costs a large but finite loss.
    p = min(max(p, 1e-12), 1.0 - 1e-12)
    return -math.log(p) if y == 1 else -math.log(1.0 - p)


def evaluate(net, points):
    """Return (mean loss, accuracy) of the net on points."""
    loss = 0.0
    correct = 0
    for x1, x2, y in points:
        p = net.forward(x1, x2)[1]
        loss += cross_entropy(p, y)
        correct += (1 if p >= 0.5 else 0) == y
    return loss / len(points), correct / len(points)


class MetricsLog:
    """Appends JSON lines to BATCHAI_METRICS_FILE; does nothing when it is unset."""

    def __init__(self, path):
        self.path = path

    def write(self, record):
        if not self.path:
            return
        # Open, append and close each time, so every line reaches the platform as
        # soon as it is written, and a crash later loses nothing already logged.
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


def parse_args(argv):
    parser = argparse.ArgumentParser(description="Quickstart training job: a tiny net on two moons.")
    parser.add_argument("--epochs", type=int, default=60, help="passes over the training set (default 60)")
    parser.add_argument("--seed", type=int, default=42, help="seed for the data and the weights (default 42)")
    parser.add_argument("--learning-rate", type=float, default=0.5, help="gradient-descent step size (default 0.5)")
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error("--epochs must be at least 1")
    if not args.learning_rate > 0:
        parser.error("--learning-rate must be positive")
    return args


def main(argv=None):
    args = parse_args(argv)
    # One generator for everything, so --seed alone determines the whole run.
    rng = random.Random(args.seed)

    points = make_moons(rng, NUM_POINTS, NOISE)
    rng.shuffle(points)
    n_test = int(len(points) * TEST_FRACTION)
    train, test, feature_stats = standardize(points[n_test:], points[:n_test])
    print(f"data: {len(train)} train / {len(test)} test points, seed={args.seed}")

    net = TinyNet(rng, HIDDEN_UNITS)
    metrics = MetricsLog(os.environ.get("BATCHAI_METRICS_FILE"))

    for epoch in range(1, args.epochs + 1):
        rng.shuffle(train)
        total = 0.0
        for start in range(0, len(train), BATCH_SIZE):
            total += net.train_batch(train[start:start + BATCH_SIZE], args.learning_rate)
        # Mean loss over the epoch (as seen while the weights were still moving).
        loss = round(total / len(train), 6)
        metrics.write({"epoch": epoch, "loss": loss})
        if epoch == 1 or epoch % 10 == 0 or epoch == args.epochs:
            print(f"epoch {epoch:3d}/{args.epochs}  loss={loss:.4f}", flush=True)

    test_loss, accuracy = evaluate(net, test)
    # Round what we report: it keeps the files readable, and they stay deterministic anyway.
    final = {"accuracy": round(accuracy, 4), "loss": round(test_loss, 6)}
    metrics.write(final)

    out_dir = os.environ.get("AZ_BATCHAI_OUTPUT_MODEL") or "output"
    os.makedirs(out_dir, exist_ok=True)
    model = {
        "architecture": {"inputs": 2, "hidden": HIDDEN_UNITS, "activation": "tanh", "output": "sigmoid"},
        # Predictions need the same input scaling the net was trained with.
        "feature_scaling": [{"mean": m, "std": s} for m, s in feature_stats],
        "weights": net.to_dict(),
    }
    with open(os.path.join(out_dir, "model.json"), "w", encoding="utf-8") as f:
        json.dump(model, f, indent=2)
        f.write("\n")
    with open(os.path.join(out_dir, "metrics.json"), "w", encoding="utf-8") as f:
        json.dump(dict(final, epochs=args.epochs, seed=args.seed, learning_rate=args.learning_rate), f, indent=2)
        f.write("\n")

    print(f"wrote model.json and metrics.json to {out_dir}")
    print(f"accuracy={final['accuracy']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
