# ruff: noqa
# As run by h-seq3 on 2026-12-03 (paths as used then; see /work/notes/h-seq3.md). Not part of make bench.
import os, sys, time, json

os.environ.setdefault("SHELFWISE_PROGRESS", "0")
import numpy as np, torch
from benchmarks.bench_sequence import BEAUTY
from shelfwise.features.dataset import Dataset
from shelfwise.features.splits import leave_one_out
from shelfwise.recommend import model_from_config
from shelfwise.recommend.sequential import _make_net, PAD

torch.set_num_threads(int(os.environ.get("NT", "2")))
ds = Dataset.from_file(BEAUTY, "amazon-beauty")
split = leave_one_out(ds)
tr = split.valid_train
for cfg in json.loads(sys.argv[1]):
    m = model_from_config({"model": "sasrec", "threads": int(os.environ.get("NT", "2")), **cfg})
    rng = np.random.default_rng(0)
    hist = tr.histories()
    m.net = _make_net(tr.n_items, m.config)
    train, valid = m._train_valid(hist, rng)
    m._negatives = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(m.net.parameters(), lr=1e-3)
    batches = m._batches(train, rng)
    nb = int(os.environ.get("NB", "40"))
    c, w = time.process_time(), time.perf_counter()
    for b in batches[:nb]:
        x, y = m._batch_tensors([train[i] for i in b], rng)
        pos = max(int((y != PAD).sum()), 1)
        loss = m._loss(m.net, x, y, pos)
        opt.zero_grad()
        loss.backward()
        opt.step()
    c, w = time.process_time() - c, time.perf_counter() - w
    print(
        cfg,
        f"batches/epoch={len(batches)} per-batch wall {w / nb * 1000:.1f} ms cpu {c / nb * 1000:.1f} ms -> epoch wall {w / nb * len(batches):.1f}s core-s {c / nb * len(batches) / 2:.1f}",
        os.getloadavg()[0],
        flush=True,
    )
