import pytest
from torch.utils.data import DataLoader

from hf_unlearn.data import DataCollatorForUnlearning, ForgetRetainDataset


def _rows(n, offset=0):
    return [{"input_ids": [offset + i, 1], "labels": [-100, 1], "index": offset + i} for i in range(n)]


def test_epoch_is_one_pass_over_forget_and_draws_are_deterministic():
    forget, retain = _rows(6), _rows(20, offset=100)
    a = ForgetRetainDataset(forget, retain, retain_per_forget=2, seed=7)
    b = ForgetRetainDataset(forget, retain, retain_per_forget=2, seed=7)
    assert len(a) == 6
    assert [a.retain_indices(i) for i in range(6)] == [b.retain_indices(i) for i in range(6)]
    assert [a[i] for i in range(6)] == [b[i] for i in range(6)]
    other = ForgetRetainDataset(forget, retain, retain_per_forget=2, seed=8)
    assert [a.retain_indices(i) for i in range(6)] != [other.retain_indices(i) for i in range(6)]
    item = a[3]
    assert item["forget_index"] == 3
    assert item["retain_index"] == [100 + j for j in a.retain_indices(3)]


def test_epochs_walk_the_retain_stream_without_repeats_and_cover_it():
    forget, retain = _rows(4), _rows(10, offset=100)
    ds = ForgetRetainDataset(forget, retain, retain_per_forget=1, seed=0)
    seen = []
    for epoch in range(5):  # 5 epochs x 4 rows = 20 draws = exactly two passes over the retain set
        ds.set_epoch(epoch)
        seen.extend(ds[i]["retain_index"][0] for i in range(len(ds)))
    assert sorted(seen[:10]) == list(range(100, 110))
    assert sorted(seen[10:]) == list(range(100, 110))
    ds.set_epoch(1)
    first = [ds.retain_indices(i) for i in range(4)]
    assert first == [ds.retain_indices(i, epoch=1) for i in range(4)]
    assert first != [ds.retain_indices(i, epoch=0) for i in range(4)]


def test_batches_have_a_fixed_forget_retain_mix():
    ds = ForgetRetainDataset(_rows(7), _rows(5, offset=50), retain_per_forget=3, seed=1)
    loader = DataLoader(ds, batch_size=2, collate_fn=DataCollatorForUnlearning(pad_token_id=0))
    shapes = [(b["forget_input_ids"].shape[0], b["retain_input_ids"].shape[0]) for b in loader]
    assert shapes == [(2, 6), (2, 6), (2, 6), (1, 3)]


def test_without_retain_and_bad_input():
    ds = ForgetRetainDataset(_rows(3))
    assert set(ds[0]) == {"forget_input_ids", "forget_labels", "forget_index"}
    with pytest.raises(ValueError, match="forget set is empty"):
        ForgetRetainDataset([], _rows(3))
    with pytest.raises(ValueError, match="retain set is empty"):
        ForgetRetainDataset(_rows(3), [])
    with pytest.raises(ValueError, match="retain_per_forget"):
        ForgetRetainDataset(_rows(3), _rows(3), retain_per_forget=0)
