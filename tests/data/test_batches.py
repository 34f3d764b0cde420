import math

import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler

from lit_deep.data import DistributedBatchSampler
from lit_deep.data._batches import TensorBatches


def _indices(batch, size):
    return list(range(size))[batch] if isinstance(batch, slice) else batch.tolist()


def _shard(size, batch_size, world, rank, **kwargs):
    sampler = DistributedBatchSampler(size, batch_size, num_replicas=world, rank=rank, **kwargs)
    batches = [_indices(b, size) for b in sampler]
    assert len(batches) == len(sampler)
    return batches


@pytest.mark.parametrize("world", [1, 2, 3])
@pytest.mark.parametrize(("size", "batch_size"), [(7, 2), (10, 3), (23, 5), (2, 4)])
def test_eval_shards_cover_every_index_once_in_order(world, size, batch_size):
    shards = [_shard(size, batch_size, world, rank) for rank in range(world)]
    flat = [i for shard in shards for batch in shard for i in batch]
    assert flat == list(range(size))
    lengths = [sum(len(b) for b in shard) for shard in shards]
    assert max(lengths) - min(lengths) <= 1
    for shard in shards:
        assert all(len(b) == batch_size for b in shard[:-1])


@pytest.mark.parametrize("world", [1, 2, 3])
@pytest.mark.parametrize("drop_last", [False, True])
def test_train_shards_are_disjoint_and_equal(world, drop_last):
    size, batch_size = 23, 4
    shards = [_shard(size, batch_size, world, r, shuffle=True, seed=3, drop_last=drop_last) for r in range(world)]
    per_rank = size // world
    flats = [[i for b in shard for i in b] for shard in shards]
    expected = (per_rank // batch_size) * batch_size if drop_last else per_rank
    assert [len(f) for f in flats] == [expected] * world
    assert len({len(s) for s in shards}) == 1  # the same number of steps on every rank
    union = [i for f in flats for i in f]
    assert len(set(union)) == len(union)
    assert set(union) <= set(range(size))


def test_train_order_depends_on_seed_and_epoch_only():
    def order(seed, epoch, rank=0, world=1):
        sampler = DistributedBatchSampler(50, 50, shuffle=True, seed=seed, num_replicas=world, rank=rank)
        sampler.set_epoch(epoch)
        return next(iter(sampler)).tolist()

    assert order(0, 0) == order(0, 0)
    assert order(0, 0) != order(0, 1)
    assert order(0, 0) != order(1, 0)
    assert sorted(order(0, 3)) == list(range(50))
    # Ranks cut the same permutation: together they are the start of the single-process order.
    assert order(0, 2, 0, 2) + order(0, 2, 1, 2) == order(0, 2)


def test_lightning_sees_a_distributed_sampler():
    sampler = DistributedBatchSampler(10, 4)
    assert isinstance(sampler, DistributedSampler)
    loader = DataLoader(TensorBatches(torch.arange(10.0), torch.arange(10)), sampler=sampler, batch_size=None)
    assert [y.tolist() for _, y in loader] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert len(loader) == math.ceil(10 / 4)


def test_tensor_batches_gathers_and_transforms():
    data = TensorBatches(torch.arange(10.0).view(5, 2), torch.arange(5), transform=lambda x: -x)
    x, y = data[torch.tensor([4, 0])]
    assert x.tolist() == [[-8.0, -9.0], [-0.0, -1.0]]
    assert y.tolist() == [4, 0]


def test_errors():
    with pytest.raises(ValueError, match=r"batch_size: must be an integer >= 1, got 0"):
        DistributedBatchSampler(10, 0)
    with pytest.raises(ValueError, match=r"rank: 2 is outside 0..1"):
        DistributedBatchSampler(10, 2, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match=r"targets: 4 targets for 5 inputs"):
        TensorBatches(torch.zeros(5, 2), torch.zeros(4))


def test_the_old_name_is_gone() -> None:
    import lit_deep.data

    with pytest.raises(AttributeError, match="has no attribute 'BatchSampler'"):
        lit_deep.data.BatchSampler  # noqa: B018
